"""The torch-free side of the loss landscape: settings, which runs, and the result tables.

* `LandscapeSettings` / `parse_settings`: the grid and budget of one landscape (config key
  `landscape:` at the top level of config.yaml; every field optional).
* `select_landscape_runs`: the best seed of each configuration of a study (runs.parquet).
* `final_loss_spread`: do different seeds end in equally good minima? (final train loss
  spread across seeds, per configuration).
* `read_landscapes` / `read_sharpness`: the per-run outputs of a study, concatenated.

Output files per run (docs/contract.md §5): `results/landscape/{study}/{run_id}.parquet`
(long format, `LANDSCAPE_SCHEMA`) and `{run_id}.json` (sharpness numbers).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from nnopt.analysis.aggregate import compared_runs
from nnopt.config.landscape_settings import HESSIAN_METHOD_NAMES, LandscapeSettings, parse_settings

__all__ = [
    "LandscapeSettings",
    "parse_settings",
    "LANDSCAPE_SCHEMA",
    "RESERVED_STEMS",
    "read_failures",
    "HESSIAN_METHOD_NAMES",
    "select_landscape_runs",
    "final_loss_spread",
    "interpolation_summary",
    "atomic_write",
    "write_rows",
    "write_json",
    "finite_or_none",
    "prepare_work_dir",
    "read_landscapes",
    "read_sharpness",
]

# Files of a study folder that are not one run's output (run ids are 16 hex digits).
RESERVED_STEMS = ("sharpness", "failed")

# kind: interp1d | surface2d | trajectory; plane: random | pca (null for interp1d).
LANDSCAPE_SCHEMA = {
    "kind": pl.String,
    "plane": pl.String,
    "alpha": pl.Float64,
    "x": pl.Float64,
    "y": pl.Float64,
    "step": pl.Int64,
    "train_loss": pl.Float64,
    "val_loss": pl.Float64,
}


def select_landscape_runs(runs: pl.DataFrame | pl.LazyFrame, study: str) -> pl.DataFrame:
    """The best seed of each configuration of `study`: status ok, highest best_val_accuracy,
    then lowest final_val_loss, then lowest seed. Columns: study, config, run_id, seed."""
    if "phase" in runs.collect_schema().names():  # never a tuning trial (compared_runs)
        runs = compared_runs(runs.lazy().collect())
    return (
        runs.lazy()
        # stalled (never left chance; nnopt.analysis.aggregate) runs are finished models too
        .filter((pl.col("study") == study) & pl.col("status").is_in(["ok", "stalled"]))
        .sort(
            ["config", "best_val_accuracy", "final_val_loss", "seed"],
            descending=[False, True, False, False],
            nulls_last=True,
        )
        .group_by("config", maintain_order=True)
        .first()
        .select("study", "config", "run_id", "seed")
        .collect()
    )


def final_loss_spread(runs: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Per study × config: how far apart the seeds' final training losses end (ok runs).

    A small range relative to the mean says the seeds found equally good minima."""
    loss = pl.col("final_train_loss")
    return (
        runs.lazy()
        .filter(pl.col("status").is_in(["ok", "stalled"]))
        .group_by("study", "config")
        .agg(
            n_seeds=loss.count(),
            final_train_loss_mean=loss.mean(),
            final_train_loss_std=loss.std(),  # sample std (ddof=1); null for one seed
            final_train_loss_min=loss.min(),
            final_train_loss_max=loss.max(),
        )
        .with_columns(  # one seed has no spread: null, not 0
            final_train_loss_range=pl.when(pl.col("n_seeds") >= 2).then(
                pl.col("final_train_loss_max") - pl.col("final_train_loss_min")
            )
        )
        .sort("study", "config")
        .collect()
    )


def interpolation_summary(frame: pl.DataFrame) -> dict[str, Any]:
    """Goodfellow et al.'s question: is the straight path from init to final downhill?

    barrier = max over α in [0, 1] of L(α) minus the chord between L(0) and L(1): 0 when
    the path never rises above the chord (convex-like), > 0 for a bump on the way.
    monotonic: L never increases from α = 0 to 1 (up to float32 evaluation noise)."""
    path = frame.filter(
        (pl.col("kind") == "interp1d") & pl.col("alpha").is_between(-1e-9, 1 + 1e-9)
    )
    alpha, loss = path["alpha"].to_numpy(), path["train_loss"].to_numpy()
    if len(loss) < 2 or not np.all(np.isfinite(loss)):
        return {"interp_barrier": None, "interp_monotonic": None}
    chord = loss[0] + (alpha - alpha[0]) / (alpha[-1] - alpha[0]) * (loss[-1] - loss[0])
    tol = 1e-5 * max(1.0, float(np.abs(loss).max()))  # float32 evaluation noise
    return {
        "interp_barrier": float(np.max(loss - chord)),
        "interp_monotonic": bool(np.all(np.diff(loss) <= tol)),
    }


# --- atomic files (the landscape job writes these; no torch needed) --------------------------


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) beside `path`, then rename: a file that exists is complete
    (nnopt.store.atomic.atomic_path: unique temp name, fsync, cleanup on error)."""
    from nnopt.store.atomic import atomic_path

    with atomic_path(path) as tmp:
        write(tmp)


def write_rows(rows: list[dict], path: Path) -> None:
    frame = (
        pl.DataFrame(rows, schema=LANDSCAPE_SCHEMA, orient="row")
        if rows
        else pl.DataFrame(schema=LANDSCAPE_SCHEMA)
    )
    atomic_write(path, lambda tmp: frame.write_parquet(tmp))


def write_json(record: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1, allow_nan=False)))


def finite_or_none(record: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf → null so the JSON stays standard."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }


def prepare_work_dir(work: Path, plan: dict[str, Any]) -> None:
    """Keep finished parts only if they were made for the same run and settings."""
    plan_path = work / "plan.json"
    if work.exists() and (not plan_path.exists() or json.loads(plan_path.read_text()) != plan):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not plan_path.exists():
        write_json(plan, plan_path)


def read_landscapes(study_dir: str | Path) -> pl.DataFrame:
    """All `{run_id}.parquet` of a study directory, with a run_id column (empty if none)."""
    files = sorted(Path(study_dir).glob("*.parquet"))
    files = [f for f in files if f.stem not in RESERVED_STEMS]
    if not files:
        return pl.DataFrame(schema={"run_id": pl.String, **LANDSCAPE_SCHEMA})
    frames = [pl.read_parquet(f).with_columns(run_id=pl.lit(f.stem)) for f in files]
    return pl.concat(frames).select("run_id", *LANDSCAPE_SCHEMA)


def read_sharpness(study_dir: str | Path) -> pl.DataFrame:
    """One row per run from the `{run_id}.json` files: the sharpness numbers (no settings)."""
    rows = []
    for path in sorted(Path(study_dir).glob("*.json")):
        if path.stem in RESERVED_STEMS:
            continue
        record = json.loads(path.read_text())
        rows.append({k: v for k, v in record.items() if not isinstance(v, (dict, list))})
    return pl.DataFrame(rows) if rows else pl.DataFrame(schema={"run_id": pl.String})


def read_failures(study_dir: str | Path) -> list[dict[str, Any]]:
    """[{run_id, config, error}] of the runs whose landscape failed (failed.json), or []."""
    path = Path(study_dir) / "failed.json"
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []
