"""A cohort: K runs of one shape signature trained as one stacked model, in one process.

`train_cohort(specs, dataset=...) -> [RunResult]` reproduces `nnopt.train.engine.train` for
each member (tests/test_cohort.py checks the curves against it): member k is built by
`build_model` right after `torch.manual_seed(seed_k)`, draws one `randperm` per epoch from
a `torch.Generator` seeded with seed_k and its dropout masks from the global-RNG stream it
would have continued alone; evaluation cadence, best-validation snapshot, targets, early
stopping, the schedule (a torch scheduler per member on a stand-in optimizer) and divergence
at evaluation points are the engine's. A member that diverges or stops early is frozen: its
state is snapshotted, its learning rate set to 0 and its loss masked, while the others go on.

Timing: every member's `train_time_s` is the cohort's (K runs shared it); the cohort's id,
size and times are in each member's provenance. Dropout on CUDA draws per-member masks from
per-member CUDA generators (torch's fused CUDA dropout takes none): the same distribution,
not the alone run's bits. See docs/cohorts.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from nnopt.config.cohort_key import STACKED_OPTIMIZERS, cohort_key
from nnopt.config.metrics import METRIC_NAMES
from nnopt.config.spec import RunSpec
from nnopt.store.runs import RunResult, now_iso, provenance
from nnopt.train.cohort_support import Schedules, configure_torch, peak_cuda_mb
from nnopt.train.data import Dataset
from nnopt.train.engine import resolve_device
from nnopt.train.memory import peak_rss_mb
from nnopt.train.models import build_model
from nnopt.train.stacked import (
    StackedMLP,
    StackedOptimizer,
    global_norm_clip_,
    member_column,
)

__all__ = ["EVAL_CHUNK", "train_cohort"]

EVAL_CHUNK = 256  # samples per evaluation forward: K members' activations stay in cache


@dataclass
class _Member:
    """One member's bookkeeping (the engine's per-run state)."""

    spec: RunSpec
    curve: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_val_accuracy: float | None = None
    best_val_step: int | None = None
    stale_evals: int = 0
    reached: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    diverged_at_step: int | None = None
    frozen: dict[str, Any] | None = None  # facts and state at the step it stopped


class _Cohort:
    """The stacked loop; methods mirror the engine's (step, evaluate, after-eval, result)."""

    def __init__(self, specs: Sequence[RunSpec], ds: Dataset, threads, dtype, cohort_id):
        keys = {cohort_key(s) for s in specs}
        if None in keys or len(keys) != 1:
            raise ValueError("train_cohort: the specs do not share one stackable shape signature")
        self.specs, self.k, self.dtype, self.cohort_id = list(specs), len(specs), dtype, cohort_id
        first = specs[0]
        self.device = resolve_device(first.device)
        configure_torch(first, self.device, threads)
        models, generators = [], []
        for s in specs:
            torch.manual_seed(s.seed)  # what the engine does before build_model
            models.append(build_model(s.model, ds.input_shape, ds.n_classes, s.init))
            generators.append(self._dropout_generator(s.seed))
        self.model = StackedMLP(models, dtype, self.device)
        self.model.set_dropout([s.model.dropout for s in specs], generators)
        self.members = [_Member(s) for s in specs]
        self._load_data(ds)
        self.perm_generators = [
            torch.Generator(device=self.device).manual_seed(s.seed) for s in specs
        ]
        self._plan(len(ds.y_train))
        self._build_optimizer()

    def _dropout_generator(self, seed: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        if self.device.type == "cpu":
            g.set_state(torch.get_rng_state())  # the global stream, right after build_model
        else:
            g.manual_seed(seed)
        return g

    def _load_data(self, ds: Dataset) -> None:
        xs = lambda a: torch.as_tensor(a).to(self.device, self.dtype)
        ys = lambda a: torch.as_tensor(a).to(self.device, torch.int64)
        self.x_train, self.y_train = xs(ds.x_train), ys(ds.y_train)
        self.x_val, self.y_val = xs(ds.x_val), ys(ds.y_val)
        self.x_test, self.y_test = xs(ds.x_test), ys(ds.y_test)
        n_eval = self.specs[0].evaluation.max_train_eval_samples
        self.x_train_eval, self.y_train_eval = self.x_train[:n_eval], self.y_train[:n_eval]
        self.input_shape = tuple(ds.input_shape)

    def _plan(self, n_train: int) -> None:
        b, e = self.specs[0].budget, self.specs[0].evaluation
        self.n_train = n_train
        self.spe = math.ceil(n_train / b.batch_size)
        self.total_steps = b.steps if b.steps is not None else b.epochs * self.spe
        self.eval_every = e.every_steps or max(1, round(e.every_epochs * self.spe))

    def _build_optimizer(self) -> None:
        o = [s.optimizer for s in self.specs]
        r = [s.regularization for s in self.specs]
        hyper = {
            "lr": [x.lr for x in o], "momentum": [x.momentum for x in o],
            "beta1": [x.beta1 for x in o], "beta2": [x.beta2 for x in o],
            "eps": [x.eps for x in o], "alpha": [x.alpha for x in o],
        }  # fmt: skip
        family = STACKED_OPTIMIZERS[o[0].name]
        self.opt = StackedOptimizer(family, self.model.params, hyper)
        self.schedules = Schedules(self.specs, self.spe, self.total_steps)
        like = self.model.params[0]
        self.active = torch.ones(self.k, dtype=self.dtype, device=self.device)
        self._set_lr()
        self.l1 = member_column([x.l1 for x in r], like).view(-1)
        self.l2 = member_column([x.l2 for x in r], like).view(-1)
        self.wd = [x.weight_decay for x in r]
        self.has_l1, self.has_l2 = any(x.l1 > 0 for x in r), any(x.l2 > 0 for x in r)
        clip = r[0].grad_clip is not None
        self.clip = member_column([x.grad_clip for x in r], like).view(-1) if clip else None

    def _set_lr(self) -> None:
        self.lrs = self.schedules.lrs()
        lr = torch.tensor(self.lrs, dtype=self.dtype, device=self.device)
        self.opt.lr = lr * self.active  # a frozen member's lr is 0

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        self.step, self.samples, self.loss_count = 0, 0, 0
        self.loss_sum = torch.zeros(self.k, dtype=self.dtype, device=self.device)
        self.train_time_s = self.eval_time_s = 0.0
        self.opt_state_bytes = None
        self.wall_start = time.perf_counter()
        self._evaluate()  # step-0 point: the untrained models
        self.segment_start = time.perf_counter()
        while not self._all_done() and self.step < self.total_steps:
            perms = torch.stack([
                torch.randperm(self.n_train, generator=g, device=self.device)
                for g in self.perm_generators
            ])  # (K, n_train): each member's own epoch order
            for idx in perms.split(self.specs[0].budget.batch_size, dim=1):
                self._train_step(idx)
                if self.step % self.eval_every == 0 or self.step == self.total_steps:
                    self._evaluate()
                if self._all_done() or self.step == self.total_steps:
                    break

    def _all_done(self) -> bool:
        return all(m.frozen is not None for m in self.members)

    def _train_step(self, idx: torch.Tensor) -> None:
        k, b = idx.shape
        flat = idx.reshape(-1)
        xb = self.x_train.index_select(0, flat).view(k, b, *self.input_shape)
        yb = self.y_train.index_select(0, flat).view(k, b)
        logits = self.model.forward(xb)  # (K, b, classes)
        # Classes on dim 1, (K, classes, b): torch's CPU log-softmax then vectorizes over the
        # batch, 3x faster than over 10 classes of a (K*b, classes) view (same values).
        losses = F.cross_entropy(logits.transpose(1, 2), yb, reduction="none")
        losses = losses.mean(dim=1)  # (K,): each member's batch mean, as alone
        total = (losses * self.active).sum() + self._penalty()
        for p in self.model.params:
            p.grad = None
        total.backward()
        if self.clip is not None:
            global_norm_clip_(self.model.params, self.clip)
        self._decay()
        self.opt.step()
        if self.schedules.after_step():
            self._set_lr()
        self.loss_sum += losses.detach()
        self.loss_count += 1
        self.samples += b
        self.step += 1
        if self.opt_state_bytes is None:
            self.opt_state_bytes = self.opt.state_bytes_per_member()

    def _penalty(self) -> torch.Tensor | float:
        out = 0.0
        for w in self.model.weights:  # (K, out, in): sums per member
            if self.has_l1:
                out = out + (self.l1 * w.abs().sum(dim=(1, 2))).sum()
            if self.has_l2:
                out = out + (self.l2 * w.pow(2).sum(dim=(1, 2))).sum()
        return out

    @torch.no_grad()
    def _decay(self) -> None:
        if not any(wd > 0 for wd in self.wd):
            return
        factor = [1.0 - lr * wd for lr, wd in zip(self.lrs, self.wd)]  # as the engine: floats
        col = torch.tensor(factor, dtype=torch.float64).to(self.device, self.dtype)
        for w in self.model.weights:
            w.mul_(col.view(-1, 1, 1))

    # --- evaluation -----------------------------------------------------------------------

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def _eval(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(K,) mean losses and accuracies on (x, y), chunked; tensors (no sync)."""
        self.model.training = False
        loss_sum = torch.zeros(self.k, dtype=self.dtype, device=self.device)
        correct = torch.zeros(self.k, dtype=self.dtype, device=self.device)
        for start in range(0, len(y), EVAL_CHUNK):
            xb, yb = x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
            logits = self.model.forward(xb, shared=True)  # (K, c, classes)
            ce = F.cross_entropy(logits.transpose(1, 2), yb.expand(self.k, -1), reduction="none")
            loss_sum += ce.sum(dim=1)
            correct += (logits.argmax(dim=2) == yb).sum(dim=1).to(self.dtype)
        self.model.training = True
        n = max(len(y), 1)  # divided in float64, as the engine divides its sums in Python
        return loss_sum.double() / n, correct.double() / n

    def _evaluate(self) -> None:
        self._sync()
        now = time.perf_counter()
        if self.step > 0:
            self.train_time_s += now - self.segment_start
        rows = self._measure()
        for k, (member, row) in enumerate(zip(self.members, rows)):
            if member.frozen is not None:
                continue
            running = row.pop("running_loss")
            if not (math.isfinite(running) and math.isfinite(row["train_loss"])):
                member.status, member.diverged_at_step = "diverged", self.step
                self._freeze(k)
                continue
            member.curve.append(row)
            self._after_eval(k, row)
        self.eval_time_s += time.perf_counter() - now
        self.segment_start = time.perf_counter()

    def _measure(self) -> list[dict[str, Any]]:
        """One curve row per member, read from the device in one transfer."""
        running = self.loss_sum / max(self.loss_count, 1)
        self.loss_sum.zero_()
        had_steps, self.loss_count = self.loss_count > 0, 0
        parts = [running, *self._eval(self.x_train_eval, self.y_train_eval)]
        has_val = len(self.y_val) > 0
        if has_val:
            parts += self._eval(self.x_val, self.y_val)
        params = self.model.params
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        layer = torch.stack([g.flatten(1).norm(dim=1) for g in grads])  # (n_params, K)
        weights = torch.stack([w.flatten(1).norm(dim=1) for w in self.model.weights])
        parts += [layer.norm(dim=0), weights.norm(dim=0)]
        table = torch.cat([torch.stack([p.double() for p in parts]), layer.double()])
        values = table.T.tolist()  # (K, columns): one transfer
        rows = []
        for k, v in enumerate(values):
            val = (v[3], v[4]) if has_val else (None, None)
            g_norm, w_norm = v[-2 - len(params)], v[-1 - len(params)]
            rows.append({
                "step": self.step, "epoch": self.step / self.spe,
                "train_time_s": self.train_time_s, "lr": self.lrs[k],
                "train_loss": v[1], "train_accuracy": v[2],
                "val_loss": val[0], "val_accuracy": val[1],
                "grad_norm": g_norm if self.step else None, "weight_norm": w_norm,
                "layer_grad_norms": v[-len(params):] if self.step else None,
                "running_loss": v[0] if had_steps or self.step == 0 else 0.0,
            })  # fmt: skip
        return rows

    def _after_eval(self, k: int, row: dict[str, Any]) -> None:
        """The engine's targets, best-val state, early stopping and plateau, for member k."""
        member, s = self.members[k], self.step
        e = member.spec.evaluation
        facts = {"epochs": s / self.spe, "steps": s, "time_s": self.train_time_s}
        val_acc = row["val_accuracy"]
        if e.target_val_accuracy is not None and val_acc is not None and "acc" not in member.reached:
            if val_acc >= e.target_val_accuracy:
                member.reached["acc"] = facts
        if e.target_train_loss is not None and "loss" not in member.reached:
            if row["train_loss"] <= e.target_train_loss:
                member.reached["loss"] = facts
        if val_acc is not None:
            if member.best_val_accuracy is None or val_acc > member.best_val_accuracy:
                member.best_val_accuracy, member.best_val_step, member.stale_evals = val_acc, s, 0
                member.best_state = self.model.member_state(k)
            elif s > 0:
                member.stale_evals += 1
        patience = member.spec.regularization.early_stopping_patience
        if patience is not None and member.stale_evals >= patience:
            self._freeze(k)
            return
        sched = self.schedules.plateau(k)
        if sched.plateau is not None and s > 0 and s >= sched.warmup_steps:
            sched.plateau.step(row["val_loss"])
            self._set_lr()

    def _freeze(self, k: int) -> None:
        """Member k stops here: its state and facts are kept, its lr becomes 0."""
        self.members[k].frozen = {
            "state": self.model.member_state(k), "step": self.step, "lr": self.lrs[k],
            "samples": self.samples, "train_time_s": self.train_time_s,
            "eval_time_s": self.eval_time_s,
        }  # fmt: skip
        self.active[k] = 0.0
        self._set_lr()

    # --- results --------------------------------------------------------------------------

    def results(self) -> list[RunResult]:
        for k, member in enumerate(self.members):
            if member.frozen is None:
                self._freeze(k)  # the end of the budget: every member stops here
            self.model.load_member_state(k, member.frozen["state"])
        final = self._eval(self.x_test, self.y_test)
        w = torch.cat([x.detach().flatten(1) for x in self.model.weights], dim=1).float()
        w_norm, sparsity = w.norm(dim=1).tolist(), (w.abs() < 1e-3).float().mean(dim=1).tolist()
        for k, member in enumerate(self.members):
            if member.best_state is not None:
                self.model.load_member_state(k, member.best_state)
        at_best = self._eval(self.x_test, self.y_test)[1].tolist()
        test_loss, test_acc = final[0].tolist(), final[1].tolist()
        out = []
        for k, member in enumerate(self.members):
            m = dict.fromkeys(METRIC_NAMES)
            if member.status == "ok":
                m.update(test_loss=test_loss[k], test_accuracy=test_acc[k])
                m.update(weight_norm=w_norm[k], weight_sparsity=sparsity[k])
            if member.best_state is not None:
                m["test_accuracy_at_best_val"] = at_best[k]
            out.append(self._result(member, m))
        return out

    def _state_bytes(self, spec: RunSpec) -> int | None:
        # torch.optim.SGD keeps no buffer when momentum is 0 (the update is then plain SGD)
        if self.opt.family == "momentum" and spec.optimizer.momentum == 0:
            return 0 if self.opt_state_bytes is not None else None
        return self.opt_state_bytes

    def _result(self, member: _Member, m: dict[str, Any]) -> RunResult:
        last, f = (member.curve[-1] if member.curve else {}), member.frozen
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            m[f"final_{key}"] = last.get(key)
        for suffix, name in (("", "acc"), ("_loss", "loss")):
            facts = member.reached.get(name, {})
            m[f"epochs_to_target{suffix}"] = facts.get("epochs")
            m[f"steps_to_target{suffix}"] = facts.get("steps")
            m[f"time_to_target{suffix}_s"] = facts.get("time_s")
        param_bytes = sum(p[0].nelement() * 4 for p in self.model.params)  # as fp32 alone
        train_s = f["train_time_s"]
        m.update(
            best_val_accuracy=member.best_val_accuracy, best_val_step=member.best_val_step,
            steps=f["step"], epochs=f["step"] / self.spe, final_lr=f["lr"],
            train_time_s=train_s, eval_time_s=f["eval_time_s"],
            wall_time_s=time.perf_counter() - self.wall_start,
            samples_per_s=f["samples"] / train_s if train_s > 0 else None,
            param_bytes=param_bytes, optimizer_state_bytes=self._state_bytes(member.spec),
            peak_rss_mb=peak_rss_mb(), peak_cuda_mb=peak_cuda_mb(self.device),
        )  # fmt: skip
        return RunResult(
            status=member.status, diverged_at_step=member.diverged_at_step, metrics=m,
            curve=member.curve, layer_names=list(self.model.names),
        )  # fmt: skip


def train_cohort(
    specs: Sequence[RunSpec],
    *,
    dataset: Dataset,
    threads: int | None = None,
    dtype: torch.dtype = torch.float32,
    cohort_id: str | None = None,
) -> list[RunResult]:
    """Train `specs` (one shape signature, see nnopt.config.cohort_key) as one stacked
    model; one RunResult per spec, in order. `dtype=torch.float64` is for equality tests."""
    started = now_iso()
    cohort = _Cohort(specs, dataset, threads, dtype, cohort_id)
    cohort.run()
    results = cohort.results()
    facts = {
        "device": str(cohort.device), "threads": torch.get_num_threads(), "world_size": 1,
        "started_at": started, "finished_at": now_iso(), "cohort_id": cohort_id,
        "cohort_size": len(specs), "cohort_train_time_s": cohort.train_time_s,
        "cohort_wall_time_s": time.perf_counter() - cohort.wall_start,
    }  # fmt: skip
    for r in results:
        r.provenance = provenance(**facts)
    return results
