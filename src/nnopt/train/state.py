"""The state of one training run, explicit: everything a step changes and a checkpoint keeps.

`TrainState` is plain data with two methods, `state_dict()` and `load_state_dict()`: the
checkpoint (`nnopt.train.checkpoint`) saves and restores it through them, so no other
module reads or sets its fields by name. What a run never changes (spec, device, data on
the device, step plan) lives in `nnopt.train.loop.Run`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["BestVal", "Timers", "TrainState"]


@dataclass
class BestVal:
    """The best-validation snapshot: accuracy, its step, a copy of the weights, and how many
    evaluations since then did not improve (early stopping counts those)."""

    accuracy: float | None = None
    step: int | None = None
    weights: dict[str, torch.Tensor] | None = None
    stale_evals: int = 0


@dataclass
class Timers:
    """Seconds spent training and evaluating (`time.perf_counter`), the wall time of earlier
    segments of a resumed run, and per-step time samples (warm-up excluded, see loop)."""

    train_s: float = 0.0
    eval_s: float = 0.0
    prior_wall_s: float = 0.0
    step_samples_s: list[float] = field(default_factory=list)
    wall_start: float = field(default_factory=time.perf_counter)
    segment_start: float = field(default_factory=time.perf_counter)
    last_checkpoint: float = field(default_factory=time.perf_counter)

    def wall_s(self) -> float:
        return self.prior_wall_s + time.perf_counter() - self.wall_start

    def close_segment(self) -> float:
        """Add the training time since the segment began; return now (the caller syncs)."""
        now = time.perf_counter()
        self.train_s += now - self.segment_start
        return now


# Fields saved as they are (numbers, lists, dicts of numbers).
_PLAIN = ("step", "epochs_done", "samples", "loss_count", "curve", "reached", "status",
          "opt_state_bytes", "memory", "snapshots")  # fmt: skip


@dataclass
class TrainState:
    """One run's mutable state. `model` is the bare module (a data-parallel wrapper belongs
    to the strategy); `generator` draws the batch order; `loss_sum` is the running train loss
    on the device since the last evaluation (read only there, so a step never syncs)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any  # nnopt.train.optim.Schedule
    scaler: Any  # torch.amp.GradScaler or None
    generator: torch.Generator
    loss_sum: torch.Tensor
    loss_count: int = 0
    step: int = 0
    epochs_done: int = 0
    samples: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    best: BestVal = field(default_factory=BestVal)
    reached: dict[str, Any] = field(default_factory=dict)  # target -> {epochs, steps, time_s}
    timers: Timers = field(default_factory=Timers)
    status: str = "ok"
    diverged_at_step: int | None = None
    done: bool = False
    opt_state_bytes: int | None = None  # known after the first step
    memory: dict[str, int] = field(default_factory=dict)  # grad/activation bytes, first step
    # spec.checkpoint.snapshots: (step, flat weights (P,) on the CPU) at each finite evaluation
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)

    def record_step(self, loss: torch.Tensor, n_samples: int) -> None:
        """Count one optimizer step on `n_samples` (the global batch) with data loss `loss`."""
        self.loss_sum += loss.detach().float()
        self.loss_count += 1
        self.samples += n_samples
        self.step += 1

    def take_running_loss(self) -> float:
        """Mean train loss since the last call (0.0 before any step); resets the sum."""
        running = (self.loss_sum / self.loss_count).item() if self.loss_count else 0.0
        self.reset_running_loss()
        return running

    def reset_running_loss(self) -> None:
        self.loss_sum.zero_()
        self.loss_count = 0

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: weights, optimizer, schedule,
        scaler, RNG streams (the global torch RNG draws dropout masks), counters, curve,
        best snapshot and timers."""
        state = {name: getattr(self, name) for name in _PLAIN}
        t, b = self.timers, self.best
        state.update(
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            schedule=self.schedule.state_dict(),
            scaler=None if self.scaler is None else self.scaler.state_dict(),
            rng_cpu=torch.get_rng_state(),
            rng_cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            generator=self.generator.get_state(), loss_sum=self.loss_sum.detach().cpu(),
            best_val_accuracy=b.accuracy, best_val_step=b.step, best_state=b.weights,
            stale_evals=b.stale_evals, train_time_s=t.train_s, eval_time_s=t.eval_s,
            wall_s=t.wall_s(), step_samples_s=list(t.step_samples_s),
        )  # fmt: skip
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in _PLAIN:
            setattr(self, name, state[name])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.generator.set_state(state["generator"])
        device = self.loss_sum.device
        self.loss_sum = state["loss_sum"].to(device)
        weights = state["best_state"]
        weights = None if weights is None else {k: v.to(device) for k, v in weights.items()}
        self.best = BestVal(state["best_val_accuracy"], state["best_val_step"], weights,
                            state["stale_evals"])  # fmt: skip
        self.timers.train_s, self.timers.eval_s = state["train_time_s"], state["eval_time_s"]
        self.timers.prior_wall_s = state["wall_s"]
        self.timers.step_samples_s = list(state["step_samples_s"])
