"""The training loop of one run, written once for every way of running it.

A run is two objects: `Run`, what never changes (spec, device, data on the device, the step
plan, hooks), and `TrainState` (`nnopt.train.state`), what a step changes. The loop draws
each epoch's permutation, times steps, decides when to evaluate, checkpoint and stop; a
**strategy** does the per-process compute. The interface (`Strategy`):

* `setup(run, state)` once, before any resume: wrap the model (data-parallel: DDP).
* `step(run, state, idx)`: one optimizer step on the global batch `idx` (indices into the
  train set): shard it, forward, backward, update, count (`state.record_step`).
* `evaluate(run, state) -> row`: one curve row plus `running_loss` (mean train loss since the
  last evaluation); data-parallel: rank 0 measures, the others get what steers the run.
* `finish(run, state) -> RunResult | None`: the final metrics (None on a non-writing rank).
* `writes`: whether this process writes checkpoints.

`nnopt.train.strategy.SingleProcess` and `nnopt.train.distributed.DataParallel` implement
it. A stacked cohort of K runs implements the same four calls over K members at once (its
state holds K members' counters; `finish` returns K results), with the loop unchanged.

Hot path (see DESIGN.md "Performance shape"): the dataset is copied to the device once; each
epoch draws one permutation from a seeded `torch.Generator` and slices it into batches
(`epoch_batches`), no DataLoader; the loss is summed on the device and read only at
evaluation points, so a step never waits on the host.

Divergence is checked at evaluation points only (the running loss since the previous
evaluation, and the evaluated train loss): `diverged_at_step` is the first evaluation step
at which a non-finite loss was seen; the run stops and the curve keeps the finite rows.
Checkpointing (spec.checkpoint) happens at epoch ends; a resumed run reaches the same
metrics as an uninterrupted one (CPU, same threads); timing metrics naturally differ.

Step time: after `WARMUP_STEPS` steps, every step is timed on CPU (two perf_counter calls);
on CUDA every `CUDA_SAMPLE_EVERY`-th step, synchronized before and after (a sync per step
would stall the queue).
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from nnopt.config.spec import DeviceSpec, RunSpec, SpecError
from nnopt.config.splits import drops_single_batch, steps_per_epoch
from nnopt.store.runs import RunResult
from nnopt.train.checkpoint import load_train_state, save_train_state
from nnopt.train.data import Dataset
from nnopt.train.models import build_model, weight_parameters
from nnopt.train.optim import averaged_weights, build_optimizer, build_schedule
from nnopt.train.record import note_targets
from nnopt.train.state import BestVal, TrainState

__all__ = [
    "EVAL_BATCH", "WARMUP_STEPS", "Hooks", "Plan", "Run", "Strategy", "build_run", "run_loop",
    "resolve_device", "epoch_batches", "eval_batch_size", "evaluate", "evaluate_split",
    "autocast", "measure", "sync",
]  # fmt: skip

EVAL_BATCH = 8192  # samples per forward pass at evaluation (few large batches) ...
_EVAL_FLOATS = 2**26  # ... unless one layer's activations would pass 256 MB (conv nets)
WARMUP_STEPS = 10  # steps not timed: first-call allocations, caches, lazy kernel set-up
CUDA_SAMPLE_EVERY = 10


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


@dataclass(frozen=True)
class Plan:
    n_train: int
    steps_per_epoch: int  # the last batch of an epoch may be short
    total_steps: int
    eval_every: int  # steps


@dataclass(frozen=True)
class Run:
    """What a run never changes. Tensors are on `device`; `params`, `names` and `weights`
    are the model's trainable parameters, their names, and the weight matrices/kernels."""

    spec: RunSpec
    device: torch.device
    hooks: Hooks
    checkpoint_dir: Path | None
    plan: Plan
    data: dict[str, torch.Tensor]  # x_/y_ train, val, test, train_eval
    eval_batch: int
    params: list[torch.nn.Parameter]
    names: list[str]
    weights: list[torch.Tensor]
    n_classes: int
    rank: int = 0

    @property
    def world_size(self) -> int:
        return self.spec.device.world_size


class Strategy(Protocol):
    """How the loop's per-process parts run (module docstring)."""

    writes: bool

    def setup(self, run: Run, state: TrainState) -> None: ...

    def step(self, run: Run, state: TrainState, idx: torch.Tensor) -> None: ...

    def evaluate(self, run: Run, state: TrainState) -> dict[str, Any]: ...

    def finish(self, run: Run, state: TrainState) -> RunResult | None: ...


# --- building a run ---------------------------------------------------------------------


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
    """Threads, and determinism where it changes anything.

    `torch.use_deterministic_algorithms` is called on CUDA only: it imports torch's compiler
    stack (~1 s and ~70 MB per process), and on CPU the kernels this engine uses (matmul,
    conv, index_select and its backward, fused optimizers) are deterministic with or
    without it (tests: bit-identical reruns and resumes). On CUDA it selects deterministic
    kernels (and cuBLAS needs the workspace setting before its first use, CUDA docs
    "Reproducibility").
    """
    torch.set_num_threads(threads or spec.threads)
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = spec.tf32
    torch.backends.cudnn.allow_tf32 = spec.tf32
    torch.backends.cudnn.benchmark = not spec.deterministic
    torch.cuda.reset_peak_memory_stats(device)
    torch.use_deterministic_algorithms(spec.deterministic)
    # Deterministic mode also fills every new tensor with NaN (a debugging aid that costs a
    # memory pass per allocation); no op here reads unset memory, and the determinism
    # tests would catch one that did.
    torch.utils.deterministic.fill_uninitialized_memory = False


def eval_batch_size(spec: RunSpec, input_shape: tuple[int, ...]) -> int:
    """EVAL_BATCH, or fewer samples when a hidden layer's activations would be too large."""
    m = spec.model
    spatial = math.prod(input_shape[1:]) if m.kind != "mlp" and len(input_shape) > 1 else 1
    if m.kind == "cnn1d" and len(input_shape) == 1:
        spatial = input_shape[0]
    per_sample = max(math.prod(input_shape), m.width * spatial)  # floats of the widest layer
    return max(64, min(EVAL_BATCH, _EVAL_FLOATS // per_sample))


def _plan(spec: RunSpec, n_train: int) -> Plan:
    b, e = spec.budget, spec.evaluation
    spe = steps_per_epoch(n_train, b.batch_size, drop_single=drops_single_batch(spec.model))
    total = b.steps if b.steps is not None else b.epochs * spe
    return Plan(n_train, spe, total, e.every_steps or max(1, round(e.every_epochs * spe)))


def _device_data(ds: Dataset, device: torch.device, n_eval: int) -> dict[str, torch.Tensor]:
    """The splits on the device, copied once (no copy on CPU when dtypes already match)."""
    data = {}
    for split in ("train", "val", "test"):
        data[f"x_{split}"] = torch.as_tensor(getattr(ds, f"x_{split}")).to(device, torch.float32)
        data[f"y_{split}"] = torch.as_tensor(getattr(ds, f"y_{split}")).to(device, torch.int64)
    data["x_train_eval"], data["y_train_eval"] = data["x_train"][:n_eval], data["y_train"][:n_eval]
    return data


def build_run(
    spec: RunSpec, ds: Dataset, hooks: Hooks, ckpt_dir: Path | None, threads, rank: int = 0
) -> tuple[Run, TrainState]:
    """The run and its initial state; seeds the global RNG (init, dropout) with spec.seed."""
    device = resolve_device(spec.device, rank)
    _configure_torch(spec.device, device, threads)
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, ds.input_shape, ds.n_classes, spec.init)
    model.to(device).train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    data = _device_data(ds, device, spec.evaluation.max_train_eval_samples)
    generator = torch.Generator(device=device).manual_seed(spec.seed)
    plan = _plan(spec, len(ds.y_train))
    params = [p for _, p in trainable]
    optimizer = build_optimizer(params, spec.optimizer, fast=True)  # tests: fast == plain
    schedule = build_schedule(optimizer, spec.schedule, steps_per_epoch=plan.steps_per_epoch,
                              total_steps=plan.total_steps)  # fmt: skip
    scaler = torch.amp.GradScaler("cuda") if spec.device.precision == "fp16" else None
    eval_batch = eval_batch_size(spec, tuple(ds.input_shape))
    names, weights = [n for n, _ in trainable], weight_parameters(model)
    run = Run(spec, device, hooks, ckpt_dir, plan, data, eval_batch, params, names, weights,
              ds.n_classes, rank)  # fmt: skip
    state = TrainState(model, optimizer, schedule, scaler, generator,
                       loss_sum=torch.zeros((), device=device))  # fmt: skip
    return run, state


# --- evaluation -------------------------------------------------------------------------


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
        with autocast(x.device, precision):
            logits = model(xb)  # (b, n_classes)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(dim=1) == yb).sum()
    model.train(was_training)
    loss, right = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()  # one sync
    return loss / max(len(y), 1), right / max(len(y), 1)


def evaluate_split(run: Run, state: TrainState, split: str) -> tuple[float, float]:
    x, y = run.data[f"x_{split}"], run.data[f"y_{split}"]
    return evaluate(state.model, x, y, run.spec.device.precision, run.eval_batch)


def measure(run: Run, state: TrainState) -> dict[str, Any]:
    """One curve row: train/val loss and accuracy (eval mode), lr, norms, running loss."""
    running = state.take_running_loss()
    train_loss, train_acc = evaluate_split(run, state, "train_eval")
    val_loss = val_acc = None
    if len(run.data["y_val"]):
        val_loss, val_acc = evaluate_split(run, state, "val")
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in run.params]
    norms = torch.stack(torch._foreach_norm(grads)).float()  # (n_params,)
    weight_norm = torch.stack(torch._foreach_norm(run.weights)).float().norm()
    layer, scalars = norms.tolist(), torch.stack([norms.norm(), weight_norm]).tolist()
    s = state.step
    return {
        "step": s, "epoch": s / run.plan.steps_per_epoch, "train_time_s": state.timers.train_s,
        "lr": state.optimizer.param_groups[0]["lr"], "train_loss": train_loss,
        "train_accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc,
        "grad_norm": scalars[0] if s else None, "weight_norm": scalars[1],
        "layer_grad_norms": layer if s else None, "running_loss": running,
    }  # fmt: skip


# --- the loop ---------------------------------------------------------------------------


def epoch_batches(perm: torch.Tensor, batch_size: int,
                  steps: int | None = None) -> tuple[torch.Tensor, ...]:
    """Index batches of one epoch: global batches of `batch_size` (the last may be short),
    the first `steps` of them (the plan's steps per epoch: a batch-norm MLP drops a last
    batch of one sample, nnopt.config.splits.steps_per_epoch); a data-parallel strategy
    shards each in its step."""
    return perm.split(batch_size)[:steps]


def run_loop(run: Run, state: TrainState, strategy: Strategy) -> None:
    """Train `state` to the end of the budget, early stop or divergence."""
    state.timers.wall_start = time.perf_counter()
    strategy.setup(run, state)
    if run.checkpoint_dir is not None:
        load_train_state(run.checkpoint_dir, run.spec.run_id, state)
    if not state.curve:
        _evaluate(run, state, strategy)  # step-0 point: the untrained model
    state.timers.segment_start = time.perf_counter()
    plan = run.plan
    sample_every = CUDA_SAMPLE_EVERY if run.device.type == "cuda" else 1
    while not state.done and state.step < plan.total_steps:
        perm = torch.randperm(plan.n_train, generator=state.generator, device=run.device)
        for idx in epoch_batches(perm, run.spec.budget.batch_size, plan.steps_per_epoch):
            if state.step >= WARMUP_STEPS and state.step % sample_every == 0:
                _timed_step(run, state, strategy, idx)
            else:
                strategy.step(run, state, idx)
            if state.step % plan.eval_every == 0 or state.step == plan.total_steps:
                _evaluate(run, state, strategy)
            if state.done or state.step == plan.total_steps:
                break
        else:
            state.epochs_done += 1
            _epoch_end(run, state, strategy)


def _timed_step(run: Run, state: TrainState, strategy: Strategy, idx: torch.Tensor) -> None:
    sync(run.device)
    start = time.perf_counter()
    strategy.step(run, state, idx)
    sync(run.device)
    state.timers.step_samples_s.append(time.perf_counter() - start)


def _evaluate(run: Run, state: TrainState, strategy: Strategy) -> None:
    sync(run.device)
    now = time.perf_counter()
    if state.step > 0:
        state.timers.train_s += now - state.timers.segment_start
    # Schedule-Free: measure, snapshot and hand out the averaged weights (a no-op else).
    with averaged_weights(state.optimizer):
        row = strategy.evaluate(run, state)
        running_loss = row.pop("running_loss")
        if not (math.isfinite(running_loss) and math.isfinite(row["train_loss"])):
            state.status, state.diverged_at_step, state.done = "diverged", state.step, True
        else:
            state.curve.append(row)
            if run.spec.checkpoint.snapshots and run.rank == 0:
                flat = torch.nn.utils.parameters_to_vector(state.model.parameters())
                state.snapshots.append((state.step, flat.detach().cpu().clone()))
            if run.hooks.on_evaluate is not None:
                run.hooks.on_evaluate(state.step, state.model)
            _after_eval(run, state, row)
    if run.hooks.progress is not None:
        run.hooks.progress({**row, "total_steps": run.plan.total_steps, "status": state.status})
    state.timers.eval_s += time.perf_counter() - now
    state.timers.segment_start = time.perf_counter()


def _after_eval(run: Run, state: TrainState, row: dict[str, Any]) -> None:
    """Targets, best-val snapshot, early stopping, plateau schedule."""
    e, s = run.spec.evaluation, state.step
    facts = {"epochs": s / run.plan.steps_per_epoch, "steps": s, "time_s": state.timers.train_s}
    note_targets(e, row, facts, state.reached)
    val_acc = row["val_accuracy"]
    best = state.best
    if val_acc is not None:
        if best.accuracy is None or val_acc > best.accuracy:
            weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
            state.best = BestVal(val_acc, s, weights, 0)
        elif s > 0:
            best.stale_evals += 1
    patience = run.spec.regularization.early_stopping_patience
    if patience is not None and state.best.stale_evals >= patience:
        state.done = True
    plateau = state.schedule.plateau
    if plateau is not None and s > 0 and s >= state.schedule.warmup_steps:
        plateau.step(row["val_loss"])


def _epoch_end(run: Run, state: TrainState, strategy: Strategy) -> None:
    ck, t = run.spec.checkpoint, state.timers
    saves = run.checkpoint_dir is not None and strategy.writes
    if saves and not state.done and state.step < run.plan.total_steps:
        due_epochs = ck.every_epochs is not None and state.epochs_done % ck.every_epochs == 0
        due_time = ck.every_seconds is not None and (
            time.perf_counter() - t.last_checkpoint >= ck.every_seconds
        )
        if due_epochs or due_time:
            sync(run.device)
            t.close_segment()
            save_train_state(run.checkpoint_dir, run.spec.run_id, state)
            t.last_checkpoint = t.segment_start = time.perf_counter()
    if run.hooks.on_epoch_end is not None:
        run.hooks.on_epoch_end(state.epochs_done)
