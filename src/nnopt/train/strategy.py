"""The single-process strategy, and the parts every strategy shares: the update after a
loss, the first step's memory probe, the final metrics and the provenance block.

See `nnopt.train.loop` for the strategy interface; `nnopt.train.distributed.DataParallel`
is the other implementation.
"""

from __future__ import annotations

import io
import platform
import statistics
from contextlib import nullcontext
from typing import Any, Callable

import torch
import torch.nn.functional as F

from nnopt.config.metrics import METRIC_NAMES
from nnopt.store.runs import RunResult, now_iso, provenance
from nnopt.train.loop import Run, autocast, evaluate_split, measure
from nnopt.train.memory import ActivationProbe, peak_rss_mb
from nnopt.train.plugins import plugin_provenance
from nnopt.train.optim import decay_weights, optimizer_state_bytes, penalty
from nnopt.train.record import curve_metrics
from nnopt.train.state import TrainState

__all__ = [
    "SNAPSHOTS_NAME",
    "snapshot_bytes",
    "SingleProcess",
    "train_step",
    "build_result",
    "run_provenance",
    "step_time_stats",
]

SNAPSHOTS_NAME = "snapshots.pt"  # in the run directory, with spec.checkpoint.snapshots
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> loss


def train_step(run: Run, state: TrainState, net: torch.nn.Module, idx: torch.Tensor,
               loss_fn: LossFn, n_global: int) -> None:  # fmt: skip
    """One optimizer step of `net` on the train samples `idx` (this process's part of a
    global batch of `n_global`); the first step also measures its memory."""
    xb = run.data["x_train"].index_select(0, idx)  # (b, *input_shape)
    yb = run.data["y_train"].index_select(0, idx)  # (b,)
    probe = ActivationProbe(run.device, run.params) if state.step == 0 else None
    with probe or nullcontext(), autocast(run.device, run.spec.device.precision):
        loss = loss_fn(net(xb), yb)
    total = loss
    if run.spec.regularization.l1 > 0 or run.spec.regularization.l2 > 0:
        total = loss + penalty(run.weights, run.spec.regularization)  # fp32, no autocast
    _update(run, state, total)
    state.record_step(loss, n_global)
    if state.opt_state_bytes is None:  # after the first step the state exists
        state.opt_state_bytes = optimizer_state_bytes(state.optimizer)
    if probe is not None:
        grads = [p.grad for p in run.params if p.grad is not None]
        state.memory = {"grad_bytes": sum(g.nelement() * g.element_size() for g in grads),
                        "activation_peak_bytes": probe.bytes}  # fmt: skip
        if probe.peak_before_bytes is not None:
            state.memory["cuda_peak_before_probe_bytes"] = probe.peak_before_bytes


def _update(run: Run, state: TrainState, total: torch.Tensor) -> None:
    """Backward, clipping, decoupled decay, optimizer and per-step schedule."""
    opt, scaler, reg = state.optimizer, state.scaler, run.spec.regularization
    opt.zero_grad(set_to_none=True)
    (scaler.scale(total) if scaler else total).backward()
    if reg.grad_clip is not None:
        if scaler:
            scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(run.params, reg.grad_clip, foreach=True)
    if reg.weight_decay > 0:
        decay_weights(run.weights, opt.param_groups[0]["lr"], reg.weight_decay)
    if scaler:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    if state.schedule.per_step is not None:
        state.schedule.per_step.step()


class SingleProcess:
    """One run in this process, on one device."""

    writes = True

    def setup(self, run: Run, state: TrainState) -> None:
        return None

    def step(self, run: Run, state: TrainState, idx: torch.Tensor) -> None:
        train_step(run, state, state.model, idx, F.cross_entropy, len(idx))

    def evaluate(self, run: Run, state: TrainState) -> dict[str, Any]:
        return measure(run, state)

    def finish(self, run: Run, state: TrainState) -> RunResult:
        return build_result(run, state)


def step_time_stats(samples_s: list[float]) -> tuple[float | None, float | None]:
    """(median, interquartile range) of per-step times; None without samples."""
    if not samples_s:
        return None, None
    if len(samples_s) < 2:
        return samples_s[0], 0.0
    q1, _, q3 = statistics.quantiles(samples_s, n=4, method="inclusive")
    return statistics.median(samples_s), q3 - q1


def _memory_metrics(run: Run, state: TrainState) -> dict[str, Any]:
    param_bytes = sum(p.nelement() * p.element_size() for p in run.params)
    grad_bytes = state.memory.get("grad_bytes")
    act_bytes = state.memory.get("activation_peak_bytes")
    parts = (param_bytes, grad_bytes, state.opt_state_bytes, act_bytes)
    peak_cuda_mb = None
    if run.device.type == "cuda":
        peak = max(torch.cuda.max_memory_allocated(run.device),
                   state.memory.get("cuda_peak_before_probe_bytes", 0))  # fmt: skip
        peak_cuda_mb = peak / 2**20
    return {
        "param_bytes": param_bytes, "optimizer_state_bytes": state.opt_state_bytes,
        "grad_bytes": grad_bytes, "activation_peak_bytes": act_bytes,
        "train_step_memory_bytes": None if None in parts else sum(parts),
        "peak_rss_mb": peak_rss_mb(), "peak_cuda_mb": peak_cuda_mb,
    }  # fmt: skip


def _setup_facts(run: Run) -> dict[str, Any]:
    d = run.data
    return {
        "n_params": sum(p.nelement() for p in run.params), "n_train": len(d["y_train"]),
        "n_val": len(d["y_val"]), "n_test": len(d["y_test"]), "n_classes": run.n_classes,
    }  # fmt: skip


def build_result(run: Run, state: TrainState) -> RunResult:
    """Final metrics (contract §2): test at the end and at the best-validation state."""
    if getattr(state.optimizer, "SWAPS_EVAL_WEIGHTS", False):
        state.optimizer.eval()  # Schedule-Free: training is over, the final model is the average
    if run.hooks.on_train_end is not None:
        run.hooks.on_train_end(state.model)
    m = dict.fromkeys(METRIC_NAMES)
    if state.status == "ok":
        m["test_loss"], m["test_accuracy"] = evaluate_split(run, state, "test")
        w = torch.cat([p.detach().flatten().float() for p in run.weights])
        m["weight_norm"] = w.norm().item()
        m["weight_sparsity"] = (w.abs() < 1e-3).float().mean().item()
    if state.best.weights is not None:
        state.model.load_state_dict(state.best.weights)
        m["test_accuracy_at_best_val"] = evaluate_split(run, state, "test")[1]
    curve_metrics(m, state.curve, state.reached)
    t = state.timers
    median_s, iqr_s = step_time_stats(t.step_samples_s)
    m.update(
        best_val_accuracy=state.best.accuracy, best_val_step=state.best.step, steps=state.step,
        epochs=state.step / run.plan.steps_per_epoch,
        final_lr=state.optimizer.param_groups[0]["lr"], train_time_s=t.train_s,
        eval_time_s=t.eval_s, wall_time_s=t.wall_s(),
        samples_per_s=state.samples / t.train_s if t.train_s > 0 else None,
        step_time_median_s=median_s, step_time_iqr_s=iqr_s,
        **_memory_metrics(run, state), **_setup_facts(run),
    )  # fmt: skip
    result = RunResult(status=state.status, diverged_at_step=state.diverged_at_step, metrics=m,
                       curve=state.curve, layer_names=list(run.names))  # fmt: skip
    if run.spec.checkpoint.snapshots:
        result.files[SNAPSHOTS_NAME] = snapshot_bytes(state.snapshots, m["final_train_loss"])
    return result


def snapshot_bytes(snapshots: list[tuple[int, torch.Tensor]], final_train_loss: float | None
                   ) -> bytes:  # fmt: skip
    """snapshots.pt: weights (T, P), steps (T,), final_train_loss; loads weights_only. The
    single engine's and a cohort member's (nnopt.train.cohort) are written by this one."""
    steps = [step for step, _ in snapshots]
    weights = torch.stack([w for _, w in snapshots]) if steps else torch.zeros(0, 0)
    buffer = io.BytesIO()
    torch.save({"weights": weights, "steps": torch.tensor(steps, dtype=torch.int64),
                "final_train_loss": final_train_loss}, buffer)  # fmt: skip
    return buffer.getvalue()


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's (what a timing was measured on)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def run_provenance(run: Run, started_at: str, **extra: Any) -> dict[str, Any]:
    """The provenance block of a trained run (every strategy's, built here only)."""
    return provenance(
        **plugin_provenance(run.spec),
        device=str(run.device), device_name=device_name(run.device),
        threads=torch.get_num_threads(), world_size=run.world_size,
        started_at=started_at, finished_at=now_iso(), **extra,
    )  # fmt: skip
