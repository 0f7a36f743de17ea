"""What was trained, stated: the 'Setup' facts of each study and of the whole set.

Facts come from the run records when they hold them (the engine records `n_params`,
`n_train`, `n_val`, `n_test`, `n_classes` per run) and from the runs' specs otherwise. A fact
that differs between a study's runs (it is a factor) lists its values and says it varies.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import polars as pl

from nnopt.config.spec import RunSpec
from nnopt.config.splits import drops_single_batch
from nnopt.config.studies import Study

__all__ = ["study_setup", "overall_setup", "SOURCES_NOTE"]

SOURCES_NOTE = (
    "The claims come from two sources: “Neural Networks Optimization”, an article, and "
    "“Neural Network Optimization”, a 2019 forum post. Their numbers come without a stated "
    "setup (data, model, budget), seeds or variance, so they are shown beside ours for "
    "orientation, with their units, and only the direction of each claim is tested.")

_TEST_METRICS = {
    "test_accuracy": "final test accuracy (the model after the last step)",
    "test_accuracy_at_best_val": "test accuracy at the best validation point",
}


def _joined(values: Iterable[Any], limit: int = 6) -> str:
    """'a' for one value, 'a / b / c (varies)' for several (at most `limit`, then '+N')."""
    values = list(dict.fromkeys(str(v) for v in values))
    if len(values) == 1:
        return values[0]
    shown = " / ".join(values[:limit]) + (f" / +{len(values) - limit}" if len(values) > limit
                                          else "")
    return f"{shown} (varies)"


def _fact(specs: list[RunSpec], describe: Callable[[RunSpec], str]) -> str:
    return _joined(describe(s) for s in specs)


def _recorded(runs: pl.DataFrame, column: str) -> str | None:
    """A metric the runs recorded ('4,000'; several values joined), or None when absent."""
    if column not in runs.columns:
        return None
    values = [int(v) for v in runs[column].drop_nulls().unique().sort().to_list()]
    return _joined(f"{v:,}" for v in values) if values else None


def _sizes(spec: RunSpec) -> str:
    d = spec.data
    train = 1 - d.val_fraction - d.test_fraction
    pool = f"{d.n_samples:,} samples" if d.n_samples else "the dataset's default size"
    return (f"{pool}, split {train:.0%} / {d.val_fraction:.0%} / {d.test_fraction:.0%} "
            f"(train / val / test)")


def _data(spec: RunSpec) -> str:
    d = spec.data
    return f"{d.name}{f' ({d.path})' if d.path else ''}"


def _parts(specs: list[RunSpec], describers) -> str:
    """Facts part by part ('mlp, 1 hidden layer of width 16, sigmoid / relu (varies)'), so a
    factor's values are listed alone rather than the whole description once per value."""
    texts = [_fact(specs, d) for d in describers]
    return ", ".join(t for t in texts if t)


def _shape(spec: RunSpec) -> str:
    m = spec.model
    layers = f"{m.depth} hidden layer{'' if m.depth == 1 else 's'} of width {m.width}"
    return layers + (f", kernel {m.kernel_size}" if m.kind != "mlp" else "")


_MODEL = (lambda s: s.model.kind, _shape, lambda s: s.model.activation,
          lambda s: f"dropout {s.model.dropout:g}" if s.model.dropout else "",
          lambda s: "batch norm" if s.model.batch_norm else "")
_OPTIMIZER = (lambda s: s.optimizer.name, lambda s: f"learning rate {s.optimizer.lr:.3g}",
              lambda s: f"momentum {s.optimizer.momentum:g}"
              if s.optimizer.name in ("momentum", "nesterov") else "",
              lambda s: f"weight decay {s.regularization.weight_decay:g}"
              if s.regularization.weight_decay else "")


def _schedule(spec: RunSpec) -> str:
    s = spec.schedule
    detail = {"step": f"×{s.gamma:g} every {s.step_size} epochs",
              "multistep": f"×{s.gamma:g} at epochs {list(s.milestones)}",
              "exponential": f"×{s.gamma:g} per epoch",
              "cosine": f"to {s.min_lr:g}",
              "plateau": f"×{s.factor:g} after {s.patience} epochs without progress"}
    text = s.name + (f" ({detail[s.name]})" if s.name in detail else "")
    return text + (f", {s.warmup_epochs:g} warm-up epochs" if s.warmup_epochs else "")


def _budget(spec: RunSpec) -> str:
    b = spec.budget
    length = f"{b.steps:,} steps" if b.steps else f"{b.epochs} epochs"
    return f"{length}, batch size {b.batch_size}"


def _evaluation(spec: RunSpec) -> str:
    e = spec.evaluation
    if e.every_steps:
        return f"every {e.every_steps} steps"
    if not e.every_epochs:
        return "at the end only"
    return "every epoch" if e.every_epochs == 1 else f"every {e.every_epochs:g} epochs"


def _target(spec: RunSpec) -> str:
    e = spec.evaluation
    parts = ([f"{e.target_val_accuracy:.0%} validation accuracy"] if e.target_val_accuracy
             else []) + ([f"train loss {e.target_train_loss:g}"] if e.target_train_loss else [])
    return " and ".join(parts) or "none"


def _dropped_batch(specs: list[RunSpec], runs: pl.DataFrame) -> str:
    """', a last batch of one sample dropped each epoch (batch norm)' where a batch-norm MLP
    trained on a recorded train size that leaves one (nnopt.config.splits.steps_per_epoch)."""
    n_train = runs["n_train"].drop_nulls().unique().to_list() if "n_train" in runs.columns else []
    drops = any(drops_single_batch(s.model) and int(n) % s.budget.batch_size == 1
                and int(n) > s.budget.batch_size for s in specs for n in n_train)
    return ("; with batch norm an epoch's last batch of one sample is dropped (batch norm "
            "cannot normalize one sample)" if drops else "")


def study_setup(study: Study, runs: pl.DataFrame) -> list[tuple[str, str]]:
    """(fact, value) rows: dataset, sizes, split seed, model, parameters, optimizer,
    schedule, budget, evaluation, target, test metric."""
    specs = [r.spec for r in study.runs]
    if not specs:
        return []
    recorded = [_recorded(runs, c) for c in ("n_train", "n_val", "n_test")]
    sizes = (f"{recorded[0]} train / {recorded[1]} val / {recorded[2]} test samples"
             if all(recorded) else _fact(specs, _sizes))
    classes = _recorded(runs, "n_classes")
    params = _recorded(runs, "n_params")
    tested = [_TEST_METRICS[m] for m in study.metrics if m in _TEST_METRICS]
    rows = [("Dataset", _fact(specs, _data) + (f", {classes} classes" if classes else "")),
            ("Sizes", sizes), ("Split seed", _fact(specs, lambda s: s.data.split_seed)),
            ("Model", _parts(specs, _MODEL)),
            ("Parameters", params or "not recorded by these runs"),
            ("Optimizer", _parts(specs, _OPTIMIZER)), ("Schedule", _fact(specs, _schedule)),
            ("Budget", _fact(specs, _budget) + _dropped_batch(specs, runs)),
            ("Evaluation", _fact(specs, _evaluation)), ("Target", _fact(specs, _target)),
            ("Test metric", "; ".join(tested) or "no test accuracy is compared")]
    return rows


def overall_setup(studies: list[Study]) -> list[dict[str, str]]:
    """One row per study: the headline facts side by side (dataset, model, optimizer,
    budget, target)."""
    out = []
    for study in studies:
        specs = [r.spec for r in study.runs]
        if not specs:
            continue
        out.append({"study": study.title, "anchor": f"study-{study.name}",
                    "data": _fact(specs, _data), "model": _parts(specs, _MODEL),
                    "optimizer": _parts(specs, _OPTIMIZER), "budget": _fact(specs, _budget),
                    "target": _fact(specs, _target)})
    return out
