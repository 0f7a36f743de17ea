"""Which runs may train together as one stacked model (a cohort): the shape signature.

Two runs can share a cohort when everything that fixes the shape and the sequence of
their computation is equal (data, architecture, batch size, budget, evaluation cadence,
optimizer family, precision, device) and they differ only in per-member values: seed,
learning rate, momentum, betas, eps, alpha, L1/L2 strength, decoupled weight decay, the
clipping threshold, early-stopping patience, targets, the init, the schedule, the dropout
rate, and labels (labels are not in the spec at all). No torch here: the planner
(nnopt.plan.cohorts) groups by this key and the cohort engine (nnopt.train.cohort)
checks it again before stacking.
"""

from __future__ import annotations

from nnopt.config.spec import RunSpec

__all__ = ["STACKED_OPTIMIZERS", "cohort_key", "why_single"]

# Optimizers with a stacked update in nnopt.train.stacked; adadelta and nadam train alone.
# adam and adamw compute the same update here (decay is decoupled for every optimizer).
STACKED_OPTIMIZERS = {
    "sgd": "sgd",
    "momentum": "momentum",
    "nesterov": "nesterov",
    "adam": "adam",
    "adamw": "adam",
    "adagrad": "adagrad",
    "rmsprop": "rmsprop",
}


def why_single(spec: RunSpec) -> str | None:
    """Why `spec` cannot be stacked (one phrase), or None when it can."""
    if spec.model.kind != "mlp":
        return f"model.kind {spec.model.kind!r} (only mlp is stacked)"
    if spec.optimizer.name not in STACKED_OPTIMIZERS:
        return f"optimizer.name {spec.optimizer.name!r} has no stacked update"
    if spec.device.world_size > 1:
        return "data-parallel (device.world_size > 1)"
    if spec.device.precision != "fp32":
        return f"device.precision {spec.device.precision!r} (only fp32 is stacked)"
    ck = spec.checkpoint
    if ck.every_epochs is not None or ck.every_seconds is not None:
        return "checkpointing is on (a cohort does not checkpoint)"
    return None


def cohort_key(spec: RunSpec) -> tuple | None:
    """The shape signature of `spec` (hashable), or None when it must train alone."""
    if why_single(spec) is not None:
        return None
    m, b, e = spec.model, spec.budget, spec.evaluation
    return (
        spec.data,
        (m.kind, m.depth, m.width, m.activation, m.batch_norm, m.dropout > 0),
        (b.epochs, b.steps, b.batch_size),
        (e.every_epochs, e.every_steps, e.max_train_eval_samples),
        STACKED_OPTIMIZERS[spec.optimizer.name],
        spec.regularization.grad_clip is not None,
        spec.device,
    )
