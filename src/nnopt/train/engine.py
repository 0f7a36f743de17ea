"""The training loop: `train(spec) -> RunResult`.

Hot path (see DESIGN.md "Performance shape"): the dataset is copied to the device once; each
epoch draws one permutation from a seeded `torch.Generator` and slices it into batches
(`epoch_batches`), no DataLoader; optimizers use fused/foreach kernels; the loss is summed
on the device and read only at evaluation points, so a step never waits on the host.

Divergence is checked at evaluation points only (the running loss sum since the previous
evaluation, and the evaluated train loss): `diverged_at_step` is the first evaluation step
at which a non-finite loss was seen. The run then stops; the curve keeps the finite rows.

Checkpointing (spec.checkpoint, with `checkpoint_dir`) happens at epoch ends; a restarted
run resumes from the checkpoint to the same metrics as an uninterrupted run (CPU, same
threads). Timing metrics naturally differ.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from nnopt.train.checkpoint import capture_state, load_checkpoint, restore_state, save_checkpoint
from nnopt.train.data import Dataset, load_dataset
from nnopt.train.plugins import plugin_provenance
from nnopt.train.memory import peak_rss_mb, reset_peak_rss
from nnopt.train.models import build_model, weight_parameters
from nnopt.train.optim import (
    averaged_weights,
    build_optimizer,
    build_schedule,
    decay_weights,
    optimizer_state_bytes,
    penalty,
)
from nnopt.config.metrics import METRIC_NAMES
from nnopt.store.runs import RunResult, now_iso, provenance
from nnopt.config.spec import DeviceSpec, RunSpec, SpecError

__all__ = [
    "Hooks",
    "train",
    "epoch_batches",
    "resolve_device",
    "evaluate",
    "peak_rss_mb",
    "EVAL_BATCH",
]

EVAL_BATCH = 8192  # samples per forward pass at evaluation (few large batches) ...
_EVAL_FLOATS = 2**26  # ... unless one layer's activations would pass 256 MB (conv nets)


@dataclass
class Hooks:
    """Callbacks; the loop knows nothing of terminals or files beyond the checkpoint."""

    progress: Callable[[dict[str, Any]], None] | None = None  # after each evaluation
    on_epoch_end: Callable[[int], None] | None = None  # epochs done; after any checkpoint
    # The final model, just before it is overwritten by the best-validation state: copy
    # (state_dict() + clone) whatever you keep.
    on_train_end: Callable[[torch.nn.Module], None] | None = None
    # (step, model) after each finite evaluation, e.g. weight snapshots for the landscape.
    on_evaluate: Callable[[int, torch.nn.Module], None] | None = None


def resolve_device(spec: DeviceSpec, rank: int = 0) -> torch.device:
    """The run's device; a data-parallel rank on CUDA gets GPU `rank` (one GPU per rank)."""
    if spec.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif spec.device == "cuda" and not torch.cuda.is_available():
        raise SpecError("device.device: 'cuda' requested but torch.cuda.is_available() is False")
    else:
        device = torch.device(spec.device)
    if device.type == "cuda" and spec.world_size > 1:
        return torch.device("cuda", rank)
    return device


def _configure_torch(spec: DeviceSpec, device: torch.device, threads: int | None) -> None:
    torch.set_num_threads(threads or spec.threads)
    if device.type == "cuda":
        # cuBLAS needs this before its first use to be deterministic (CUDA docs, "Reproducibility").
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cuda.matmul.allow_tf32 = spec.tf32
        torch.backends.cudnn.allow_tf32 = spec.tf32
        torch.backends.cudnn.benchmark = not spec.deterministic
        torch.cuda.reset_peak_memory_stats(device)
    torch.use_deterministic_algorithms(spec.deterministic)
    # Deterministic mode also fills every new tensor with NaN (a debugging aid that costs a
    # memory pass per allocation, ~10% of a small-MLP step); no op here reads unset memory,
    # and the determinism tests would catch one that did.
    torch.utils.deterministic.fill_uninitialized_memory = False


def epoch_batches(
    perm: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1
) -> list[torch.Tensor]:
    """Index batches of one epoch: global batches of `batch_size` (the last may be short);
    with world_size > 1, rank r takes the r-th contiguous shard of each global batch."""
    batches = perm.split(batch_size)
    if world_size == 1:
        return list(batches)
    return [b.tensor_split(world_size)[rank] for b in batches]


def eval_batch_size(spec: RunSpec, input_shape: tuple[int, ...]) -> int:
    """EVAL_BATCH, or fewer samples when a hidden layer's activations would be too large."""
    m = spec.model
    spatial = math.prod(input_shape[1:]) if m.kind != "mlp" and len(input_shape) > 1 else 1
    if m.kind == "cnn1d" and len(input_shape) == 1:
        spatial = input_shape[0]
    per_sample = max(math.prod(input_shape), m.width * spatial)  # floats of the widest layer
    return max(64, min(EVAL_BATCH, _EVAL_FLOATS // per_sample))


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32", batch: int = EVAL_BATCH
) -> tuple:
    """(mean loss, accuracy) of `model` in eval mode on (x, y), in few large batches."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for start in range(0, len(y), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        with _autocast(x.device, precision):
            logits = model(xb)  # (b, n_classes)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(dim=1) == yb).sum()
    model.train(was_training)
    loss, right = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()  # one sync
    return loss / max(len(y), 1), right / max(len(y), 1)


class _Trainer:
    """State of one run; methods are the loop's parts (step, evaluate, checkpoint, finish)."""

    def __init__(
        self, spec: RunSpec, ds: Dataset, hooks: Hooks, ckpt_dir: Path | None, threads, rank=0
    ):
        self.spec, self.hooks, self.ckpt_dir = spec, hooks, ckpt_dir
        # Data-parallel ranks (nnopt.train.distributed) build one trainer each, in its own process.
        self.rank, self.world_size = rank, spec.device.world_size
        self.device = resolve_device(spec.device, rank)
        _configure_torch(spec.device, self.device, threads)
        torch.manual_seed(spec.seed)
        self.model = build_model(spec.model, ds.input_shape, ds.n_classes, spec.init)
        self.model.to(self.device).train()
        # `net` runs the training forward: the model, or its DDP wrapper (evaluation and
        # results use the bare model: no collectives there).
        self.net = self.model
        if self.world_size > 1:
            from nnopt.train.distributed import wrap_model

            self.net = wrap_model(self.model, self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.weights = weight_parameters(self.model)
        reg = spec.regularization
        self.has_penalty, self.weight_decay = reg.l1 > 0 or reg.l2 > 0, reg.weight_decay
        # Copied to the device once (no copy on CPU when dtypes already match).
        xs = lambda a: torch.as_tensor(a).to(self.device, torch.float32)  # noqa: E731
        ys = lambda a: torch.as_tensor(a).to(self.device, torch.int64)  # noqa: E731
        self.x_train, self.y_train = xs(ds.x_train), ys(ds.y_train)
        self.x_val, self.y_val = xs(ds.x_val), ys(ds.y_val)
        self.x_test, self.y_test = xs(ds.x_test), ys(ds.y_test)
        n_eval = spec.evaluation.max_train_eval_samples
        self.eval_batch = eval_batch_size(spec, tuple(ds.input_shape))
        self.x_train_eval, self.y_train_eval = self.x_train[:n_eval], self.y_train[:n_eval]
        self.generator = torch.Generator(device=self.device).manual_seed(spec.seed)
        self._plan(len(ds.y_train))
        fast = True  # fused/foreach kernels; tests check they match the plain ones
        self.opt = build_optimizer(self.params, spec.optimizer, fast=fast)
        self.schedule = build_schedule(
            self.opt, spec.schedule, steps_per_epoch=self.spe, total_steps=self.total_steps
        )
        fp16 = spec.device.precision == "fp16"
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        self._reset_state()

    def _plan(self, n_train: int) -> None:
        b, e = self.spec.budget, self.spec.evaluation
        self.n_train = n_train
        self.spe = math.ceil(n_train / b.batch_size)  # steps per epoch (last batch short)
        self.total_steps = b.steps if b.steps is not None else b.epochs * self.spe
        self.eval_every = e.every_steps or max(1, round(e.every_epochs * self.spe))

    def _reset_state(self) -> None:
        self.step, self.epochs_done, self.samples = 0, 0, 0
        self.loss_sum = torch.zeros((), device=self.device)  # running train loss (device)
        self.loss_count = 0
        self.curve: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_val_accuracy, self.best_val_step, self.stale_evals = None, None, 0
        self.reached: dict[str, Any] = {}  # time-to-target facts, filled once reached
        self.train_time_s = self.eval_time_s = self.prior_wall_s = 0.0
        self.opt_state_bytes: int | None = None
        self.status, self.diverged_at_step, self.done = "ok", None, False
        self.last_ckpt_time = time.perf_counter()

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        self.wall_start = time.perf_counter()
        self._resume()
        if not self.curve:
            self._evaluate()  # step-0 point: the untrained model
        self.segment_start = time.perf_counter()
        while not self.done and self.step < self.total_steps:
            perm = torch.randperm(self.n_train, generator=self.generator, device=self.device)
            for idx in epoch_batches(perm, self.spec.budget.batch_size):
                self._train_step(idx)
                if self.step % self.eval_every == 0 or self.step == self.total_steps:
                    self._evaluate()
                if self.done or self.step == self.total_steps:
                    break
            else:
                self.epochs_done += 1
                self._epoch_end()

    def _train_step(self, idx: torch.Tensor) -> None:
        n_global = len(idx)  # the global batch (all ranks together)
        if self.world_size > 1:
            idx = idx.tensor_split(self.world_size)[self.rank]  # this rank's contiguous shard
        xb = self.x_train.index_select(0, idx)  # (b, *input_shape)
        yb = self.y_train.index_select(0, idx)  # (b,)
        with _autocast(self.device, self.spec.device.precision):
            loss = self._loss(self.net(xb), yb, n_global)
        total = loss
        if self.has_penalty:
            total = loss + penalty(self.weights, self.spec.regularization)  # fp32, no autocast
        self.opt.zero_grad(set_to_none=True)
        (self.scaler.scale(total) if self.scaler else total).backward()
        clip = self.spec.regularization.grad_clip
        if clip is not None:
            if self.scaler:
                self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.params, clip, foreach=True)
        if self.weight_decay > 0:
            decay_weights(self.weights, self.opt.param_groups[0]["lr"], self.weight_decay)
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        if self.schedule.per_step is not None:
            self.schedule.per_step.step()
        self.loss_sum += loss.detach().float()
        self.loss_count += 1
        self.samples += n_global
        self.step += 1
        if self.opt_state_bytes is None:  # after the first step the state exists
            self.opt_state_bytes = optimizer_state_bytes(self.opt)

    def _loss(self, logits: torch.Tensor, yb: torch.Tensor, n_global: int) -> torch.Tensor:
        if self.world_size == 1:
            return F.cross_entropy(logits, yb)
        # Shard sum × world_size / global batch: DDP's gradient average over ranks is then
        # exactly the global-batch mean's gradient, also for an uneven or empty last shard.
        return F.cross_entropy(logits, yb, reduction="sum") * (self.world_size / n_global)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _evaluate(self) -> None:
        self._sync()
        now = time.perf_counter()
        if self.step > 0:
            self.train_time_s += now - self.segment_start
        # Schedule-Free: measure, snapshot and hand out the averaged weights (a no-op else).
        with averaged_weights(self.opt):
            if self.world_size > 1:
                from nnopt.train.distributed import share_evaluation

                row = share_evaluation(self)  # rank 0 measures; the others get what steers them
            else:
                row = self._measure()
            running_loss = row.pop("running_loss")  # mean train loss since the last evaluation
            if not (math.isfinite(running_loss) and math.isfinite(row["train_loss"])):
                self.status, self.diverged_at_step, self.done = "diverged", self.step, True
            else:
                self.curve.append(row)
                if self.hooks.on_evaluate is not None:
                    self.hooks.on_evaluate(self.step, self.model)
                self._after_eval(row)
        if self.hooks.progress is not None:
            self.hooks.progress(self._progress(row))
        self.eval_time_s += time.perf_counter() - now
        self.segment_start = time.perf_counter()

    def _eval(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        return evaluate(self.model, x, y, self.spec.device.precision, self.eval_batch)

    def _measure(self) -> dict[str, Any]:
        """One curve row: train/val loss and accuracy (eval mode), lr, norms."""
        running = (self.loss_sum / self.loss_count).item() if self.loss_count else 0.0
        self.loss_sum.zero_()
        self.loss_count = 0
        train_loss, train_acc = self._eval(self.x_train_eval, self.y_train_eval)
        val_loss = val_acc = None
        if len(self.y_val):
            val_loss, val_acc = self._eval(self.x_val, self.y_val)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        norms = torch.stack(torch._foreach_norm(grads)).float()  # (n_params,)
        weight_norm = torch.stack(torch._foreach_norm(self.weights)).float().norm()
        global_norm = norms.norm()
        layer, scalars = norms.tolist(), torch.stack([global_norm, weight_norm]).tolist()
        return {
            "step": self.step, "epoch": self.step / self.spe,
            "train_time_s": self.train_time_s, "lr": self.opt.param_groups[0]["lr"],
            "train_loss": train_loss, "train_accuracy": train_acc,
            "val_loss": val_loss, "val_accuracy": val_acc,
            "grad_norm": scalars[0] if self.step else None, "weight_norm": scalars[1],
            "layer_grad_norms": layer if self.step else None, "running_loss": running,
        }  # fmt: skip

    def _after_eval(self, row: dict[str, Any]) -> None:
        """Targets, best-val state, early stopping, plateau schedule."""
        e, s = self.spec.evaluation, self.step
        facts = {"epochs": s / self.spe, "steps": s, "time_s": self.train_time_s}
        val_acc = row["val_accuracy"]
        if e.target_val_accuracy is not None and val_acc is not None and "acc" not in self.reached:
            if val_acc >= e.target_val_accuracy:
                self.reached["acc"] = facts
        if e.target_train_loss is not None and "loss" not in self.reached:
            if row["train_loss"] <= e.target_train_loss:
                self.reached["loss"] = facts
        if val_acc is not None:
            if self.best_val_accuracy is None or val_acc > self.best_val_accuracy:
                self.best_val_accuracy, self.best_val_step, self.stale_evals = val_acc, s, 0
                state = self.model.state_dict()
                self.best_state = {k: v.detach().clone() for k, v in state.items()}
            elif s > 0:
                self.stale_evals += 1
        patience = self.spec.regularization.early_stopping_patience
        if patience is not None and self.stale_evals >= patience:
            self.done = True
        plateau = self.schedule.plateau
        if plateau is not None and s > 0 and s >= self.schedule.warmup_steps:
            plateau.step(row["val_loss"])

    def _progress(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "total_steps": self.total_steps, "status": self.status}

    # --- checkpoints ----------------------------------------------------------------------

    def _epoch_end(self) -> None:
        ck = self.spec.checkpoint
        saves = self.ckpt_dir is not None and self.rank == 0  # only rank 0 writes
        if saves and not self.done and self.step < self.total_steps:
            due_epochs = ck.every_epochs is not None and self.epochs_done % ck.every_epochs == 0
            due_time = ck.every_seconds is not None and (
                time.perf_counter() - self.last_ckpt_time >= ck.every_seconds
            )
            if due_epochs or due_time:
                self._save()
        if self.hooks.on_epoch_end is not None:
            self.hooks.on_epoch_end(self.epochs_done)

    def _save(self) -> None:
        self._sync()
        self.train_time_s += time.perf_counter() - self.segment_start
        save_checkpoint(self.ckpt_dir, capture_state(self))
        self.last_ckpt_time = self.segment_start = time.perf_counter()

    def _resume(self) -> None:
        state = None if self.ckpt_dir is None else load_checkpoint(self.ckpt_dir)
        if state is not None and state.get("run_id") == self.spec.run_id:
            restore_state(self, state)

    def wall_time_s(self) -> float:
        return self.prior_wall_s + time.perf_counter() - self.wall_start

    # --- the result -----------------------------------------------------------------------

    def result(self) -> RunResult:
        """Final metrics (contract §2): test at the end and at the best-validation state."""
        if getattr(self.opt, "SWAPS_EVAL_WEIGHTS", False):
            self.opt.eval()  # training is over: the final model is the averaged one
        if self.hooks.on_train_end is not None:
            self.hooks.on_train_end(self.model)
        m = dict.fromkeys(METRIC_NAMES)
        last = self.curve[-1] if self.curve else {}
        if self.status == "ok":
            m["test_loss"], m["test_accuracy"] = self._eval(self.x_test, self.y_test)
            w = torch.cat([p.detach().flatten().float() for p in self.weights])
            m["weight_norm"] = w.norm().item()
            m["weight_sparsity"] = (w.abs() < 1e-3).float().mean().item()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
            m["test_accuracy_at_best_val"] = self._eval(self.x_test, self.y_test)[1]
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            m[f"final_{key}"] = last.get(key)
        for suffix, name in (("", "acc"), ("_loss", "loss")):
            facts = self.reached.get(name, {})
            m[f"epochs_to_target{suffix}"] = facts.get("epochs")
            m[f"steps_to_target{suffix}"] = facts.get("steps")
            m[f"time_to_target{suffix}_s"] = facts.get("time_s")
        param_bytes = sum(p.nelement() * p.element_size() for p in self.params)
        m.update(
            best_val_accuracy=self.best_val_accuracy, best_val_step=self.best_val_step,
            steps=self.step, epochs=self.step / self.spe, final_lr=self.opt.param_groups[0]["lr"],
            train_time_s=self.train_time_s, eval_time_s=self.eval_time_s,
            wall_time_s=self.wall_time_s(),
            samples_per_s=self.samples / self.train_time_s if self.train_time_s > 0 else None,
            param_bytes=param_bytes, optimizer_state_bytes=self.opt_state_bytes,
            peak_rss_mb=peak_rss_mb(), peak_cuda_mb=_peak_cuda_mb(self.device),
        )  # fmt: skip
        return RunResult(
            status=self.status, diverged_at_step=self.diverged_at_step, metrics=m,
            curve=self.curve, layer_names=list(self.names),
        )  # fmt: skip


def train(
    spec: RunSpec,
    *,
    dataset: Dataset | None = None,
    hooks: Hooks | None = None,
    checkpoint_dir: str | Path | None = None,
    data_cache: str | Path | None = None,
    threads: int | None = None,
) -> RunResult:
    """Train one run. Exceptions propagate (the runner records them as failed runs); a
    non-finite loss returns status 'diverged'. `threads` overrides spec.device.threads
    (execution only); `checkpoint_dir` enables resume and spec.checkpoint saving."""
    started = now_iso()
    reset_peak_rss()
    ds = dataset if dataset is not None else load_dataset(spec.data, data_cache)
    if spec.device.world_size > 1:  # ranks in their own processes; see nnopt.train.distributed
        from nnopt.train.distributed import train_distributed

        return train_distributed(
            spec, dataset=ds, hooks=hooks, checkpoint_dir=checkpoint_dir, threads=threads
        )
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
    trainer = _Trainer(spec, ds, hooks or Hooks(), ckpt, threads)
    trainer.run()
    result = trainer.result()
    result.provenance = provenance(
        **plugin_provenance(spec),
        device=str(trainer.device),
        device_name=_device_name(trainer.device),
        threads=torch.get_num_threads(),
        world_size=spec.device.world_size,
        started_at=started,
        finished_at=now_iso(),
    )
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()


def _peak_cuda_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
