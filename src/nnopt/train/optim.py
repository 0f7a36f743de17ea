"""Optimizers, learning-rate schedules and regularizers, built on torch.optim.

* `OPTIMIZERS[name](params, spec, fast)` -> a torch.optim optimizer. `fast` asks for the
  fused kernel where torch has one for this optimizer (sgd family, adam, adamw, adagrad on
  CPU and CUDA), else the multi-tensor `foreach` path; tests check both give the same update.
* `build_schedule(...)` -> a `Schedule`: one torch scheduler stepped once per optimizer
  step (epoch periods converted to steps), or ReduceLROnPlateau stepped at evaluations.
* New optimizers: RAdam, Adamax, ASGD, Adafactor (torch.optim); Muon for 2-D weights with
  AdamW for the rest (`MuonWithAdamW`); Lion and Schedule-Free AdamW in-tree
  (nnopt.train.optimizers); `python`: a user factory (nnopt.train.plugins).
  `averaged_weights(opt)` switches an optimizer that evaluates other weights than it steps
  (Schedule-Free: the average x) to those weights for the duration of a `with` block.
* `penalty(weights, reg)` is the L1/L2 term added to the loss; `decay_weights` is the
  decoupled weight decay w <- w - lr*wd*w applied before each step (Loshchilov & Hutter
  2019), for every optimizer, to Linear/Conv weights only.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch.optim import lr_scheduler as sched

from nnopt.train.eager_optim import defer_dynamo_import
from nnopt.train.optimizers import Lion, MuonWithAdamW, ScheduleFreeAdamW
from nnopt.config.spec import OptimizerSpec, RegularizationSpec, ScheduleSpec, SpecError, did_you_mean

# Every optimizer the engine and the cohorts build comes through this module: from here on
# torch.optim's compile guards import no compiler stack (~1.4 s a job; see eager_optim).
defer_dynamo_import()

__all__ = [
    "OPTIMIZERS",
    "FUSED_OPTIMIZERS",
    "SCHEDULES",
    "Schedule",
    "build_optimizer",
    "build_schedule",
    "penalty",
    "decay_weights",
    "optimizer_state_bytes",
    "averaged_weights",
]

Params = Iterable[torch.nn.Parameter]

# torch.optim classes that accept fused=True (CPU since torch 2.4, CUDA earlier).
FUSED_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad")


def _kernel(name: str, fast: bool) -> dict[str, bool]:
    if not fast:
        return {"foreach": False}
    return {"fused": True} if name in FUSED_OPTIMIZERS else {"foreach": True}


# Every optimizer gets weight_decay=0: decay is decoupled and applied by `decay_weights`,
# identically for all of them (so "adamw" equals "adam" unless regularization.weight_decay).
OPTIMIZERS: dict[str, Callable[[Params, OptimizerSpec, bool], torch.optim.Optimizer]] = {
    "sgd": lambda p, s, f: torch.optim.SGD(p, lr=s.lr, **_kernel("sgd", f)),
    "momentum": lambda p, s, f: torch.optim.SGD(
        p, lr=s.lr, momentum=s.momentum, **_kernel("momentum", f)
    ),
    "nesterov": lambda p, s, f: torch.optim.SGD(
        p, lr=s.lr, momentum=s.momentum, nesterov=True, **_kernel("nesterov", f)
    ),
    "adam": lambda p, s, f: torch.optim.Adam(
        p, lr=s.lr, betas=(s.beta1, s.beta2), eps=s.eps, **_kernel("adam", f)
    ),
    "adamw": lambda p, s, f: torch.optim.AdamW(
        p, lr=s.lr, betas=(s.beta1, s.beta2), eps=s.eps, weight_decay=0.0, **_kernel("adamw", f)
    ),
    "adagrad": lambda p, s, f: torch.optim.Adagrad(p, lr=s.lr, eps=s.eps, **_kernel("adagrad", f)),
    # RMSprop's own momentum defaults to 0 (Hinton's RMSprop has none); the spec's momentum
    # default of 0.9 is meant for the SGD family, so it is not applied here.
    "rmsprop": lambda p, s, f: torch.optim.RMSprop(
        p, lr=s.lr, alpha=s.alpha, eps=s.eps, **_kernel("rmsprop", f)
    ),
    "adadelta": lambda p, s, f: torch.optim.Adadelta(
        p, lr=s.lr, rho=s.rho, eps=s.eps, **_kernel("adadelta", f)
    ),
    "nadam": lambda p, s, f: torch.optim.NAdam(
        p, lr=s.lr, betas=(s.beta1, s.beta2), eps=s.eps, **_kernel("nadam", f)
    ),
    "radam": lambda p, s, f: torch.optim.RAdam(
        p, lr=s.lr, betas=(s.beta1, s.beta2), eps=s.eps, **_kernel("radam", f)
    ),
    "adamax": lambda p, s, f: torch.optim.Adamax(
        p, lr=s.lr, betas=(s.beta1, s.beta2), eps=s.eps, **_kernel("adamax", f)
    ),
    # Averaged SGD (Polyak & Juditsky 1992) with torch's defaults for lambd, alpha and t0.
    "asgd": lambda p, s, f: torch.optim.ASGD(p, lr=s.lr, **_kernel("asgd", f)),
    # Adafactor (Shazeer & Stern 2018): factored second moment; torch's eps and beta2 decay.
    "adafactor": lambda p, s, f: torch.optim.Adafactor(p, lr=s.lr, **_kernel("adafactor", f)),
    "muon": lambda p, s, f: MuonWithAdamW(
        p, lr=s.lr, momentum=s.momentum, betas=(s.beta1, s.beta2), eps=s.eps
    ),
    "lion": lambda p, s, f: Lion(p, lr=s.lr, betas=(s.beta1, s.beta2)),
    "schedule_free_adamw": lambda p, s, f: ScheduleFreeAdamW(
        p, lr=s.lr, betas=(s.beta1, s.beta2), eps=s.eps
    ),
    "python": lambda p, s, f: _python_optimizer(p, s),
}


def _python_optimizer(params: Params, spec: OptimizerSpec) -> torch.optim.Optimizer:
    from nnopt.train.plugins import build_optimizer_plugin  # the user's factory decides kernels

    return build_optimizer_plugin(params, spec)


@contextmanager
def averaged_weights(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Within the block the parameters hold the weights to evaluate and keep (Schedule-Free:
    the average x, not the gradient point y); a no-op for every other optimizer."""
    if not getattr(optimizer, "SWAPS_EVAL_WEIGHTS", False):
        yield
        return
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()


def build_optimizer(params: Params, spec: OptimizerSpec, *, fast: bool = True):
    if spec.name not in OPTIMIZERS:
        raise SpecError(
            f"optimizer.name: unknown value {spec.name!r}; allowed: {', '.join(OPTIMIZERS)}"
            + did_you_mean(spec.name, OPTIMIZERS)
        )
    return OPTIMIZERS[spec.name](list(params), spec, fast)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of per-parameter state tensors (ndim >= 1): Adam 2x params, momentum 1x, SGD 0.

    Scalar bookkeeping tensors (`step`, NAdam's `mu_product`) are not counted.
    """
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value) and value.ndim >= 1:
                total += value.nelement() * value.element_size()
    return total


# --- schedules -----------------------------------------------------------------------------


@dataclass
class Schedule:
    """`per_step` is stepped after every optimizer step; `plateau` at evaluations (val loss)
    once warm-up is over. Either may be None (constant lr, no warm-up: nothing to step)."""

    per_step: sched.LRScheduler | None
    plateau: sched.ReduceLROnPlateau | None
    warmup_steps: int

    def state_dict(self) -> dict:
        return {
            "per_step": None if self.per_step is None else self.per_step.state_dict(),
            "plateau": None if self.plateau is None else self.plateau.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if self.per_step is not None:
            self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])


# Each builder gets (optimizer, spec, steps_per_epoch, main_steps) and returns a scheduler
# stepped per optimizer step. step/multistep/exponential change the lr exactly at epoch
# boundaries (as if stepped per epoch); cosine decays smoothly over the steps after warm-up.
SCHEDULES: dict[str, Callable[..., sched.LRScheduler | None]] = {
    "constant": lambda opt, s, spe, n: None,
    "step": lambda opt, s, spe, n: sched.StepLR(opt, step_size=s.step_size * spe, gamma=s.gamma),
    "multistep": lambda opt, s, spe, n: sched.MultiStepLR(
        opt, milestones=[m * spe for m in s.milestones], gamma=s.gamma
    ),
    "exponential": lambda opt, s, spe, n: sched.StepLR(opt, step_size=spe, gamma=s.gamma),
    "cosine": lambda opt, s, spe, n: sched.CosineAnnealingLR(
        opt, T_max=max(n, 1), eta_min=s.min_lr
    ),
    "plateau": lambda opt, s, spe, n: None,  # see build_schedule
    # Warmup-stable-decay (Hu et al. 2024, MiniCPM): the base lr, then a linear decay to
    # min_lr over the last `decay_fraction` of the steps after warm-up.
    "wsd": lambda opt, s, spe, n: sched.LambdaLR(opt, _wsd_factor(opt, s, n)),
    "linear": lambda opt, s, spe, n: sched.LinearLR(
        opt, 1.0, _min_factor(opt, s), total_iters=max(n, 1)
    ),
    # Smith & Topin 2019: cosine up from lr/div_factor to lr over pct_start of the steps,
    # then cosine down to lr/(div_factor*final_div_factor); the optimizer's momentum/betas
    # are left alone (cycle_momentum=False) so every optimizer can use it.
    "one_cycle": lambda opt, s, spe, n: sched.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=max(n, 1),
        pct_start=s.pct_start, cycle_momentum=False,
    ),  # fmt: skip
    # SGDR (Loshchilov & Hutter 2017): cosine to min_lr, restart every restart_epochs
    # (each period t_mult times the previous one).
    "cosine_restarts": lambda opt, s, spe, n: sched.CosineAnnealingWarmRestarts(
        opt, T_0=s.restart_epochs * spe, T_mult=s.t_mult, eta_min=s.min_lr
    ),
    # lr * (1 - t/n)^power, reaching 0 at the last step.
    "polynomial": lambda opt, s, spe, n: sched.PolynomialLR(
        opt, total_iters=max(n, 1), power=s.power
    ),
}


def _min_factor(opt: torch.optim.Optimizer, spec: ScheduleSpec) -> float:
    """schedule.min_lr as a fraction of the base lr (LinearLR and LambdaLR work in factors)."""
    return min(1.0, spec.min_lr / opt.param_groups[0]["lr"])


def _wsd_factor(opt: torch.optim.Optimizer, spec: ScheduleSpec, n: int) -> Callable[[int], float]:
    floor = _min_factor(opt, spec)
    decay_steps = max(1, math.ceil(spec.decay_fraction * n))
    stable_steps = n - decay_steps

    def factor(t: int) -> float:  # t: steps since the end of warm-up
        if t < stable_steps:
            return 1.0
        done = min(1.0, (t - stable_steps) / decay_steps)
        return 1.0 - (1.0 - floor) * done

    return factor


def build_schedule(
    optimizer: torch.optim.Optimizer,
    spec: ScheduleSpec,
    *,
    steps_per_epoch: int,
    total_steps: int,
) -> Schedule:
    if spec.name not in SCHEDULES:
        raise SpecError(
            f"schedule.name: unknown value {spec.name!r}; allowed: {', '.join(SCHEDULES)}"
            + did_you_mean(spec.name, SCHEDULES)
        )
    warmup = int(round(spec.warmup_epochs * steps_per_epoch))
    if warmup > total_steps:  # nnopt check refuses this first (config/check_fit.py)
        raise SpecError(
            f"schedule.warmup_epochs: {spec.warmup_epochs} ({warmup} steps) is longer than the "
            f"training budget ({total_steps} steps); allowed: at most the budget"
        )
    main = SCHEDULES[spec.name](optimizer, spec, steps_per_epoch, total_steps - warmup)
    if warmup > 1:
        # lr of step s (0-based) is base * (s + 1) / warmup: starts near 0, reaches base.
        ramp = sched.LinearLR(optimizer, 1.0 / warmup, 1.0, total_iters=warmup - 1)
        if main is not None:
            main = sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
        else:
            main = ramp
    plateau = None
    if spec.name == "plateau":
        plateau = sched.ReduceLROnPlateau(
            optimizer, mode="min", factor=spec.factor, patience=spec.patience, min_lr=spec.min_lr
        )
    return Schedule(per_step=main, plateau=plateau, warmup_steps=warmup)


# --- regularization ------------------------------------------------------------------------


def penalty(weights: list[torch.Tensor], reg: RegularizationSpec) -> torch.Tensor | None:
    """l1 * sum|w| + l2 * sum w^2 over `weights`, or None when both are zero."""
    terms = []
    if reg.l1 > 0:
        terms.append(reg.l1 * sum(w.abs().sum() for w in weights))
    if reg.l2 > 0:
        terms.append(reg.l2 * sum(w.pow(2).sum() for w in weights))
    return sum(terms) if terms else None


@torch.no_grad()
def decay_weights(weights: list[torch.Tensor], lr: float, weight_decay: float) -> None:
    """Decoupled weight decay: w <- w * (1 - lr * wd), one multi-tensor kernel."""
    if weight_decay > 0 and weights:
        torch._foreach_mul_(weights, 1.0 - lr * weight_decay)

