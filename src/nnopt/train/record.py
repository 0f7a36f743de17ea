"""What an evaluation point and a finished run record, the same for a single run
(nnopt.train.loop, nnopt.train.strategy) and for each member of a stacked cohort
(nnopt.train.cohort): the first evaluation at which each target was reached, and the
final-curve and to-target metrics."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from nnopt.config.spec import EvaluationSpec

__all__ = ["note_targets", "curve_metrics"]


def note_targets(
    evaluation: EvaluationSpec, row: Mapping[str, Any], facts: dict[str, Any],
    reached: dict[str, Any],
) -> None:
    """Keep `facts` (epochs, steps, time_s) under "acc" / "loss" the first time the run's
    validation-accuracy / train-loss target is met at an evaluation point."""
    val_acc = row["val_accuracy"]
    if evaluation.target_val_accuracy is not None and val_acc is not None and "acc" not in reached:
        if val_acc >= evaluation.target_val_accuracy:
            reached["acc"] = facts
    if evaluation.target_train_loss is not None and "loss" not in reached:
        if row["train_loss"] <= evaluation.target_train_loss:
            reached["loss"] = facts


def curve_metrics(
    metrics: dict[str, Any], curve: Sequence[Mapping[str, Any]], reached: Mapping[str, Any]
) -> None:
    """final_* from the last curve row; epochs/steps/time to each target (None: never)."""
    last = curve[-1] if curve else {}
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        metrics[f"final_{key}"] = last.get(key)
    for suffix, name in (("", "acc"), ("_loss", "loss")):
        facts = reached.get(name, {})
        metrics[f"epochs_to_target{suffix}"] = facts.get("epochs")
        metrics[f"steps_to_target{suffix}"] = facts.get("steps")
        metrics[f"time_to_target{suffix}_s"] = facts.get("time_s")
