"""The parts of a stacked cohort (nnopt.train.cohort) that are not its loop: each member's
bookkeeping, the data on the device, the per-member regularization, the evaluation
forward, and the curve rows and RunResult of each member.

Every computation keeps the order of operations of the single-run engine, so a member's
numbers equal the run trained alone (tests/train/test_cohort.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from nnopt.config.spec import RegularizationSpec, RunSpec
from nnopt.store.runs import RunResult
from nnopt.train.cohort_support import peak_cuda_mb
from nnopt.train.data import Dataset
from nnopt.train.memory import peak_rss_mb
from nnopt.train.record import curve_metrics
from nnopt.train.stacked import StackedMLP, global_norm_clip_, member_column
from nnopt.train.strategy import SNAPSHOTS_NAME, snapshot_bytes

__all__ = [
    "EVAL_CHUNK", "Member", "StackedData", "StackedEvaluator", "StackedRegularization",
    "curve_rows", "member_result", "stacked_eval",
]

EVAL_CHUNK = 256  # samples per evaluation forward: K members' activations stay in cache


@dataclass
class Member:
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
    # spec.checkpoint.snapshots: (step, flat weights (P,) on the CPU) at each finite evaluation
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)

    def keep_snapshot(self, step: int, model: StackedMLP, k: int) -> None:
        """spec.checkpoint.snapshots: the member's flat weights (member k of the stacked
        model, in named_parameters order and nn.Module layout), as the single engine keeps
        them."""
        if self.spec.checkpoint.snapshots:
            self.snapshots.append((step, model.member_flat(k).cpu()))  # cat: a new tensor


@dataclass
class StackedData:
    """The splits on the device in the cohort's dtype (labels int64), and the train subset
    that evaluation measures (evaluation.max_train_eval_samples)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_train_eval: torch.Tensor
    y_train_eval: torch.Tensor
    input_shape: tuple[int, ...]

    @classmethod
    def load(cls, ds: Dataset, device: torch.device, dtype, n_eval: int) -> "StackedData":
        xs = lambda a: torch.as_tensor(a).to(device, dtype)
        ys = lambda a: torch.as_tensor(a).to(device, torch.int64)
        x_train, y_train = xs(ds.x_train), ys(ds.y_train)
        return cls(x_train, y_train, xs(ds.x_val), ys(ds.y_val), xs(ds.x_test), ys(ds.y_test),
                   x_train[:n_eval], y_train[:n_eval], tuple(ds.input_shape))  # fmt: skip


class StackedRegularization:
    """Per-member L1/L2 penalties, decoupled weight decay and gradient clipping, as (K,)
    columns over the stacked weights (K, out, in)."""

    def __init__(self, regs: Sequence[RegularizationSpec], like: torch.Tensor, dtype, device):
        self.l1 = member_column([x.l1 for x in regs], like).view(-1)
        self.l2 = member_column([x.l2 for x in regs], like).view(-1)
        self.wd = [x.weight_decay for x in regs]
        self.has_l1, self.has_l2 = any(x.l1 > 0 for x in regs), any(x.l2 > 0 for x in regs)
        clip = regs[0].grad_clip is not None
        self.clip = member_column([x.grad_clip for x in regs], like).view(-1) if clip else None
        self.dtype, self.device = dtype, device

    def penalty(self, weights: Sequence[torch.Tensor]) -> torch.Tensor | float:
        out = 0.0
        for w in weights:  # (K, out, in): sums per member
            if self.has_l1:
                out = out + (self.l1 * w.abs().sum(dim=(1, 2))).sum()
            if self.has_l2:
                out = out + (self.l2 * w.pow(2).sum(dim=(1, 2))).sum()
        return out

    def clip_(self, params: Sequence[torch.Tensor]) -> None:
        if self.clip is not None:
            global_norm_clip_(params, self.clip)

    @torch.no_grad()
    def decay_(self, weights: Sequence[torch.Tensor], lrs: Sequence[float]) -> None:
        if not any(wd > 0 for wd in self.wd):
            return
        factor = [1.0 - lr * wd for lr, wd in zip(lrs, self.wd)]  # as the engine: floats
        col = torch.tensor(factor, dtype=torch.float64).to(self.device, self.dtype)
        for w in weights:
            w.mul_(col.view(-1, 1, 1))


@torch.no_grad()
def stacked_eval(model, x: torch.Tensor, y: torch.Tensor, k: int, dtype, device):
    """(K,) mean losses and accuracies on (x, y), chunked; tensors (no sync)."""
    model.training = False
    loss_sum = torch.zeros(k, dtype=dtype, device=device)
    correct = torch.zeros(k, dtype=dtype, device=device)
    for start in range(0, len(y), EVAL_CHUNK):
        xb, yb = x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
        logits = model.forward(xb, shared=True)  # (K, c, classes)
        ce = F.cross_entropy(logits.transpose(1, 2), yb.expand(k, -1), reduction="none")
        loss_sum += ce.sum(dim=1)
        correct += (logits.argmax(dim=2) == yb).sum(dim=1).to(dtype)
    model.training = True
    n = max(len(y), 1)  # divided in float64, as the engine divides its sums in Python
    return loss_sum.double() / n, correct.double() / n


def curve_rows(values: list[list[float]], *, step: int, steps_per_epoch: int,
               train_time_s: float, lrs: Sequence[float], has_val: bool, n_params: int,
               had_steps: bool) -> list[dict[str, Any]]:
    """One curve row per member from the (K, columns) table of `_Cohort._measure`:
    running loss, train loss/acc, [val loss/acc], grad norm, weight norm, per-layer norms."""
    rows = []
    for k, v in enumerate(values):
        val = (v[3], v[4]) if has_val else (None, None)
        g_norm, w_norm = v[-2 - n_params], v[-1 - n_params]
        rows.append({
            "step": step, "epoch": step / steps_per_epoch,
            "train_time_s": train_time_s, "lr": lrs[k],
            "train_loss": v[1], "train_accuracy": v[2],
            "val_loss": val[0], "val_accuracy": val[1],
            "grad_norm": g_norm if step else None, "weight_norm": w_norm,
            "layer_grad_norms": v[-n_params:] if step else None,
            "running_loss": v[0] if had_steps or step == 0 else 0.0,
        })  # fmt: skip
    return rows


class StackedEvaluator:
    """Evaluation of the stacked model: the curve rows at an evaluation point and, at the
    end, each member's test metrics at its final and its best-validation state."""

    def __init__(self, model, data: StackedData, k: int, dtype, device: torch.device):
        self.model, self.data, self.k, self.dtype, self.device = model, data, k, dtype, device

    def eval(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return stacked_eval(self.model, x, y, self.k, self.dtype, self.device)

    def measure(self, running: torch.Tensor, *, had_steps: bool, step: int,
                steps_per_epoch: int, train_time_s: float,
                lrs: Sequence[float]) -> list[dict[str, Any]]:
        """One curve row per member, read from the device in one transfer."""
        d = self.data
        parts = [running, *self.eval(d.x_train_eval, d.y_train_eval)]
        has_val = len(d.y_val) > 0
        if has_val:
            parts += self.eval(d.x_val, d.y_val)
        params = self.model.params
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        layer = torch.stack([g.flatten(1).norm(dim=1) for g in grads])  # (n_params, K)
        weights = torch.stack([w.flatten(1).norm(dim=1) for w in self.model.weights])
        parts += [layer.norm(dim=0), weights.norm(dim=0)]
        table = torch.cat([torch.stack([p.double() for p in parts]), layer.double()])
        return curve_rows(table.T.tolist(), step=step, steps_per_epoch=steps_per_epoch,
                          train_time_s=train_time_s, lrs=lrs, has_val=has_val,
                          n_params=len(params), had_steps=had_steps)  # fmt: skip

    def test_metrics(self, members: Sequence[Member]) -> list[dict[str, Any]]:
        """Per member: test loss/accuracy and weight norm/sparsity at its final (frozen)
        state, test accuracy at its best-validation state (left in the model)."""
        model, x_test, y_test = self.model, self.data.x_test, self.data.y_test
        for k, member in enumerate(members):
            model.load_member_state(k, member.frozen["state"])
        final = self.eval(x_test, y_test)
        w = torch.cat([x.detach().flatten(1) for x in model.weights], dim=1).float()
        w_norm, sparsity = w.norm(dim=1).tolist(), (w.abs() < 1e-3).float().mean(dim=1).tolist()
        for k, member in enumerate(members):
            if member.best_state is not None:
                model.load_member_state(k, member.best_state)
        at_best = self.eval(x_test, y_test)[1].tolist()
        test_loss, test_acc = final[0].tolist(), final[1].tolist()
        return [{"test_loss": test_loss[k], "test_accuracy": test_acc[k], "weight_norm": w_norm[k],
                 "weight_sparsity": sparsity[k], "test_accuracy_at_best_val": at_best[k]}
                for k in range(len(members))]  # fmt: skip


def member_result(member: Member, m: dict[str, Any], *, model, steps_per_epoch: int,
                  wall_start: float, device: torch.device,
                  optimizer_state_bytes: int | None, setup: dict[str, int],
                  activation_bytes: int | None = None) -> RunResult:
    """The member's RunResult: `m` (test metrics filled) completed as the engine does. The
    exact sizes are the member's own (fp32 gradients are shaped like the parameters; the
    activation peak of a step, `activation_bytes`, from the member's model alone, as a
    stacked step's saved tensors are the members' together), and the timings are the
    cohort's (provenance says so)."""
    f = member.frozen
    curve_metrics(m, member.curve, member.reached)
    n_params = sum(p[0].nelement() for p in model.params)
    param_bytes = n_params * 4  # as fp32 alone
    train_s = f["train_time_s"]
    m.update(
        best_val_accuracy=member.best_val_accuracy, best_val_step=member.best_val_step,
        steps=f["step"], epochs=f["step"] / steps_per_epoch, final_lr=f["lr"],
        train_time_s=train_s, eval_time_s=f["eval_time_s"],
        wall_time_s=time.perf_counter() - wall_start,
        samples_per_s=f["samples"] / train_s if train_s > 0 else None,
        param_bytes=param_bytes, optimizer_state_bytes=optimizer_state_bytes,
        grad_bytes=param_bytes, n_params=n_params, **setup, activation_peak_bytes=activation_bytes,
        train_step_memory_bytes=None if None in (optimizer_state_bytes, activation_bytes)
        else 2 * param_bytes + optimizer_state_bytes + activation_bytes,  # params + grads
        peak_rss_mb=peak_rss_mb(), peak_cuda_mb=peak_cuda_mb(device),
    )  # fmt: skip
    result = RunResult(
        status=member.status, diverged_at_step=member.diverged_at_step, metrics=m,
        curve=member.curve, layer_names=list(model.names),
    )  # fmt: skip
    if member.spec.checkpoint.snapshots:  # the landscape job reads them (no re-training)
        result.files[SNAPSHOTS_NAME] = snapshot_bytes(member.snapshots, m["final_train_loss"])
    return result
