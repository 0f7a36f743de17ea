"""The runs and curves tables: one row per planned run, one per run × evaluation point.

`load_runs` reads each run's metrics.json (a run with no directory is status `missing`: shown,
never dropped) and marks `stalled` the ok runs that never left chance; `counted` states which
statuses a metric's statistics use (nnopt.analysis.aggregate's docstring has the rule);
`load_curves` scans every curve.parquet lazily with the store's curve schema.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import polars as pl

from nnopt.config.metrics import METRICS, metric_info
from nnopt.config.study_rules import format_value
from nnopt.config.studies import Config, Run
from nnopt.store.runs import curve_schema

__all__ = [
    "STATUSES", "PHASES", "SearchedRuns", "compared_runs", "STALL_MARGIN", "chance_classes", "counted", "load_curves", "load_runs",
    "mark_stalled",
]

STATUSES = ("ok", "stalled", "diverged", "failed", "missing", "pruned")
# A run's part in a study: `default` its own runs (the config's values), `trial` a tuning
# trial and `confirm` a chosen value on a fresh seed (studies with a tune: block).
PHASES = ("default", "trial", "confirm")
STALL_MARGIN = 0.05  # accuracy (fraction) above chance a run must reach to count as learning
_TEN_CLASS_SETS = ("MNIST", "FashionMNIST", "KMNIST", "CIFAR10", "SVHN", "EMNIST")
_RUN_COLUMNS: dict[str, Any] = {
    "study": pl.String, "run_id": pl.String, "seed": pl.Int64, "config": pl.String,
    "config_index": pl.Int64, "phase": pl.String, "status": pl.String, "error": pl.String,
    "diverged_at_step": pl.Int64, "factors": pl.String, "n_classes": pl.Float64,
    "target_val_accuracy": pl.Float64, "target_train_loss": pl.Float64,
    "family": pl.String, "problem": pl.String,
}
_PROVENANCE: dict[str, Any] = {
    "device": pl.String, "device_name": pl.String, "world_size": pl.Int64, "threads": pl.Int64,
    "cpu_count": pl.Int64, "hostname": pl.String, "nnopt_version": pl.String,
    "torch_version": pl.String, "python_version": pl.String, "started_at": pl.String, "finished_at": pl.String,
    # a member of a stacked cohort (nnopt.train.cohort): null for a run trained alone
    "cohort_id": pl.String, "cohort_size": pl.Int64, "cohort_wall_time_s": pl.Float64,
}

def _read_metrics(path: Path) -> dict[str, Any] | str:
    """The metrics.json document, or an error message when it cannot be read."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as err:
        return f"unreadable metrics.json: {err}"
    return doc if isinstance(doc, dict) else "unreadable metrics.json: not an object"


def chance_classes(spec) -> int | None:
    """Classes of a run's data from its spec (the engine's `n_classes` metric wins when
    present): mnist1d and digits have 10, the generated sets data.n_classes; None = unknown."""
    data = spec.data
    if data.name in ("mnist1d", "digits"):
        return 10
    if data.name in ("spirals", "blobs"):
        return data.n_classes
    if data.name == "torchvision":
        return {"CIFAR100": 100}.get(data.torchvision_name,
                                     10 if data.torchvision_name in _TEN_CLASS_SETS else None)
    return None


def _run_row(run: Run, config_index: int, runs_dir: Path,
             phase: str = "default") -> dict[str, Any]:  # fmt: skip
    run_id = run.run_id  # a hash of the spec, computed on each access
    row = {
        "study": run.study, "run_id": run_id, "seed": run.seed, "config": run.config,
        "config_index": config_index, "phase": phase, "status": "missing",
        "factors": json.dumps(dict(run.factors)), "n_classes": chance_classes(run.spec),
        # Without a target, a null time-to-target is 'not measured', not 'never reached'.
        "target_val_accuracy": run.spec.evaluation.target_val_accuracy,
        "target_train_loss": run.spec.evaluation.target_train_loss,
        "device": run.spec.device.device, "world_size": run.spec.device.world_size,
        **{key: format_value(value) for key, value in run.factors},
    }
    doc = _read_metrics(runs_dir / run.study / run_id / "metrics.json")
    if isinstance(doc, str):
        if doc != "missing":
            row.update(status="failed", error=doc)
        return row
    prov = doc.get("provenance") or {}
    row.update(
        status=doc.get("status") if doc.get("status") in STATUSES else "failed",
        error=doc.get("error"), diverged_at_step=doc.get("diverged_at_step"),
        **{k: prov.get(k, row.get(k)) for k in ("device", "device_name", "world_size",
                                                "threads", "cpu_count", "hostname",
                                                "started_at", "finished_at", "cohort_id",
                                                "cohort_size", "cohort_wall_time_s")},
        nnopt_version=prov.get("nnopt"), torch_version=prov.get("torch"),
        python_version=prov.get("python"),
    )
    for key, value in (doc.get("metrics") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = float(value)
    return row


SearchedRuns = Mapping[str, Sequence[tuple[str, Run]]]  # study -> (phase, run) of its search


def load_runs(config: Config, runs_dir: str | Path,
              searched: SearchedRuns | None = None) -> pl.DataFrame:  # fmt: skip
    """One row per run the config expands to, in the config's order (phase `default`), then
    per study the (phase, run) pairs of its search in `searched` (trial runs, pruned ones
    included, and confirmation runs; nnopt.search.driver.search_runs)."""
    searched = searched or {}
    runs_dir, rows, metric_keys = Path(runs_dir), [], dict.fromkeys(METRICS)
    factor_keys = dict.fromkeys(k for s in config.studies for k in s.factor_keys)
    for study in config.studies:
        labels: dict[str, int] = {}
        phased = [("default", r) for r in study.runs] + list(searched.get(study.name, ()))
        for phase, run in phased:
            index = labels.setdefault(run.config, len(labels))
            rows.append(row := _run_row(run, index, runs_dir, phase))
            # The configured study and its problem (nnopt.config.problems); claims use them.
            row.update(family=study.family or study.name, problem=study.problem)
            metric_keys.update(dict.fromkeys(
                k for k in row if k not in _RUN_COLUMNS and k not in _PROVENANCE
                and k not in factor_keys))
    schema = {**_RUN_COLUMNS, **{k: pl.String for k in factor_keys},
              **{k: pl.Float64 for k in metric_keys}, **_PROVENANCE}
    return mark_stalled(pl.DataFrame(rows, schema=schema, strict=False))


def mark_stalled(runs: pl.DataFrame) -> pl.DataFrame:
    """Status `stalled` for ok runs that never left chance (module docstring)."""
    learned = [c for c in ("best_val_accuracy", "final_train_accuracy") if c in runs.columns]
    if not learned or "n_classes" not in runs.columns:
        return runs
    best = pl.coalesce([pl.col(c) for c in learned])
    stalled = ((pl.col("status") == "ok") & (best <= 1 / pl.col("n_classes") + STALL_MARGIN))
    return runs.with_columns(status=pl.when(stalled.fill_null(False)).then(pl.lit("stalled"))
                             .otherwise(pl.col("status")))


def counted(metric: str) -> tuple[tuple[str, ...], str | None]:
    """The declared rule (module docstring) for one metric: (statuses whose runs count, what a
    diverged run counts as: 'chance', 'never reached' or None when it is left out)."""
    info = metric_info(metric)
    if info.censored:
        return ("ok", "stalled", "diverged"), "never reached"
    if "accuracy" in metric:
        return ("ok", "stalled", "diverged"), "chance"
    return ("ok", "stalled"), None


def load_curves(runs: pl.DataFrame, runs_dir: str | Path) -> pl.DataFrame:
    """All curve.parquet files of the runs that have one, with study/run_id/seed/config."""
    runs_dir = Path(runs_dir)
    keys = runs.select("study", "run_id", "seed", "config").with_columns(
        _path=pl.format("{}/{}/{}/curve.parquet", pl.lit(str(runs_dir)), "study", "run_id"))
    keys = keys.filter(pl.col("_path").map_elements(os.path.exists, return_dtype=pl.Boolean))
    schema = curve_schema()
    if keys.height == 0:
        return pl.DataFrame(schema={k: v for k, v in keys.schema.items() if k != "_path"}
                            | schema)
    scan = pl.scan_parquet(
        keys["_path"].to_list(), schema=schema, include_file_paths="_path",
        missing_columns="insert", extra_columns="ignore",
        cast_options=pl.ScanCastOptions(integer_cast="allow-float", float_cast="upcast"),
    )
    return (
        keys.lazy()
        .join(scan, on="_path", how="inner")  # attach study/run_id/seed/config to each point
        .drop("_path")
        .sort("study", "run_id", "step")
        .collect()
    )


def compared_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """The rows comparisons, summaries and claims use: a study's confirmation runs when its
    search has any (fresh seeds, chosen values), else its own runs; never tuning trials."""
    if "phase" not in runs.columns:  # a table written before phases existed
        return runs
    confirmed = (pl.col("phase") == "confirm").any().over("study")
    return runs.filter(pl.when(confirmed).then(pl.col("phase") == "confirm")
                       .otherwise(pl.col("phase") == "default"))
