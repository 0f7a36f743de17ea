"""The landscape of one finished run, computed in resumable batches and written atomically.

1. The run's own snapshots (`snapshots.pt` in its run directory, written by the engine for
   runs of `landscape: true` studies), else `snapshot_training` re-trains the run from its
   spec (runs are bit-reproducible on CPU)
   with a hook that keeps the flat weights θ (P,) at every evaluation point: θ_0 is the
   initialization, θ_T the final weights. The engine's final train loss is kept to check
   that the re-run reproduced the recorded one.
2. `compute_landscape` evaluates, one part file per batch in a work directory:
   `interp1d` (Goodfellow et al. 2015), the trajectory (actual losses at the snapshots,
   projected onto both planes), 2-D grid rows of a random filter-normalized plane and of the
   PCA plane of the snapshots (Li et al. 2018), and the Hessian's extreme eigenvalues.
   A killed job reruns only the missing parts; a changed setting or run invalidates them.
3. `landscape_run` merges the parts into `{run_id}.parquet` + `{run_id}.json` and removes
   the work directory; `landscape_study` does this for the best seed of each configuration.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnopt.landscape import surface as ls
from nnopt.landscape.batches import (
    Problem,
    Snapshots,
    hessian_summary,
    make_batches,
    make_planes,
)
from nnopt.landscape.tables import (
    RESERVED_STEMS,
    LandscapeSettings,
    atomic_write,
    finite_or_none,
    interpolation_summary,
    prepare_work_dir,
    select_landscape_runs,
    write_json,
    write_rows,
)
from nnopt.config.spec import RunSpec, SpecError, parse_spec

__all__ = [
    "Snapshots",
    "Problem",
    "snapshot_training",
    "problem_for",
    "compute_landscape",
    "landscape_run",
    "landscape_study",
]

SCHEMA_VERSION = 2  # 2: surface2d rows on the train split only (val_loss null)


def snapshot_training(spec: RunSpec, dataset: Any) -> Snapshots:
    """Re-train `spec` on `dataset` and keep the flat weights at every evaluation point."""
    from nnopt.train.engine import Hooks, train

    if spec.device.world_size > 1:
        # One process, the same global batch: not bit-identical to the data-parallel run
        # (`reproduced` in the JSON says so), but the same optimization problem.
        spec = spec.replace(device=dataclasses.replace(spec.device, world_size=1))
    weights: list[Tensor] = []
    steps: list[int] = []

    def keep(step: int, model: nn.Module) -> None:
        weights.append(ls.flat_params(model).cpu())
        steps.append(step)

    result = train(spec, dataset=dataset, hooks=Hooks(on_evaluate=keep))
    if len(weights) < 2:
        raise SpecError(f"run {spec.run_id}: fewer than 2 finite evaluation points to snapshot")
    return Snapshots(torch.stack(weights), tuple(steps), result.metrics.get("final_train_loss"))


def problem_for(spec: RunSpec, dataset: Any, settings: LandscapeSettings) -> Problem:
    """The run's architecture (weights set later) on the first N train / val samples."""
    from nnopt.train.models import build_model

    torch.manual_seed(spec.seed)
    model = build_model(spec.model, dataset.input_shape, dataset.n_classes, spec.init)
    n_val = settings.val_samples or len(dataset.y_val)
    splits = {
        "train": (
            dataset.x_train[: settings.train_samples],
            dataset.y_train[: settings.train_samples],
        )
    }
    if len(dataset.y_val):
        splits["val"] = (dataset.x_val[:n_val], dataset.y_val[:n_val])
    tensors = {
        k: (torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)))  # copies: no mmap
        for k, (x, y) in splits.items()
    }
    # The data loss the engine reports as train_loss (no L1/L2 penalty).
    return Problem(model, tensors, F.cross_entropy)


# --- one run --------------------------------------------------------------------------------


def compute_landscape(
    problem: Problem,
    snaps: Snapshots,
    settings: LandscapeSettings,
    work: Path,
    *,
    max_batches: int | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]] | None:
    """All batches into `work` (existing parts are reused); None if stopped by max_batches.

    Returns the merged long table (LANDSCAPE_SCHEMA) and the sharpness summary."""
    work.mkdir(parents=True, exist_ok=True)
    planes = make_planes(problem, snaps, settings)
    batches = make_batches(problem, snaps, settings, planes)
    hessian_path, new = work / "hessian.json", 0
    for name, compute in batches:
        part = work / f"{name}.parquet"
        if part.exists():
            continue
        if max_batches is not None and new >= max_batches:
            return None
        write_rows(compute(), part)
        new += 1
    if not hessian_path.exists():
        if max_batches is not None and new >= max_batches:
            return None
        write_json(finite_or_none(hessian_summary(problem, snaps.weights[-1], settings)), hessian_path)
    frame = pl.concat([pl.read_parquet(work / f"{name}.parquet") for name, _ in batches])
    ratio = planes["_pca_ratio"]
    path = frame.filter(pl.col("kind") == "trajectory")
    summary = {
        **json.loads(hessian_path.read_text()),
        **interpolation_summary(frame),
        "landscape_final_train_loss": path["train_loss"][-1],  # the last snapshot = final
        "pca_explained_variance_1": ratio[0],
        "pca_explained_variance_2": ratio[1],
    }
    return frame, finite_or_none(summary)


def _snapshots(work: Path, spec: RunSpec, dataset: Any, run_dir: Path | None = None) -> Snapshots:
    """The training's own snapshots (`<run dir>/snapshots.pt`, spec.checkpoint.snapshots),
    else a re-run's, saved in the work directory so a resumed job skips training."""
    path = work / "snapshots.pt"
    if run_dir is not None and (Path(run_dir) / "snapshots.pt").exists():
        path = Path(run_dir) / "snapshots.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        return Snapshots(
            saved["weights"], tuple(saved["steps"].tolist()), saved["final_train_loss"]
        )
    snaps = snapshot_training(spec, dataset)
    state = {
        "weights": snaps.weights,
        "steps": torch.tensor(snaps.steps),
        "final_train_loss": snaps.final_train_loss,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return snaps


def _is_current(
    json_path: Path, parquet_path: Path, settings: LandscapeSettings, recorded: Any
) -> bool:
    """Outputs exist for these settings and for this training result (a retrained run with
    a different final loss gets a new landscape)."""
    if not (json_path.exists() and parquet_path.exists()):
        return False
    try:
        old = json.loads(json_path.read_text())
    except ValueError:
        return False
    return (
        old.get("schema_version") == SCHEMA_VERSION
        and old.get("settings_key") == settings.key
        and old.get("recorded_final_train_loss") == recorded
    )


def landscape_run(
    run_dir: str | Path,
    out_dir: str | Path,
    settings: LandscapeSettings,
    *,
    dataset: Any = None,
    data_cache: str | Path | None = None,
    max_batches: int | None = None,
) -> Path | None:
    """`{run_id}.parquet` + `.json` in out_dir for the finished run in run_dir.

    Returns the parquet path, or None when `max_batches` new batches were done first (the
    next call resumes). Up-to-date outputs (same settings) are left alone."""
    from nnopt.store.runs import read_run
    from nnopt.config.studies import config_label

    record = read_run(run_dir)
    run_id, out_dir = record["run_id"], Path(out_dir)
    out_parquet, out_json = out_dir / f"{run_id}.parquet", out_dir / f"{run_id}.json"
    recorded = (record.get("metrics") or {}).get("final_train_loss")
    if _is_current(out_json, out_parquet, settings, recorded):
        return out_parquet
    spec = parse_spec(record["spec"])
    if dataset is None:
        from nnopt.train.data import load_dataset

        dataset = load_dataset(spec.data, data_cache)
    work = out_dir / f".{run_id}.parts"
    plan = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "settings_key": settings.key}
    prepare_work_dir(work, {**plan, "recorded_final_train_loss": recorded})
    snaps = _snapshots(work, spec, dataset, Path(run_dir))
    done = compute_landscape(
        problem_for(spec, dataset, settings), snaps, settings, work, max_batches=max_batches
    )
    if done is None:
        return None
    frame, summary = done
    meta = {
        "schema_version": SCHEMA_VERSION, "study": record.get("study"), "run_id": run_id,
        "config": config_label(record.get("factors") or {}), "seed": record.get("seed"),
        "n_params": int(snaps.weights.shape[1]), "n_snapshots": int(snaps.weights.shape[0]),
        "recorded_final_train_loss": recorded, "rerun_final_train_loss": snaps.final_train_loss,
        "reproduced": recorded is not None and recorded == snaps.final_train_loss,
    }  # fmt: skip
    write_rows(frame.to_dicts(), out_parquet)
    write_json(
        {**meta, **summary, "settings_key": settings.key, "settings": settings.to_dict()}, out_json
    )
    shutil.rmtree(work, ignore_errors=True)
    return out_parquet


def landscape_study(
    study: str,
    runs_table: str | Path | pl.DataFrame,
    runs_root: str | Path,
    out_dir: str | Path,
    settings: LandscapeSettings,
    *,
    data_cache: str | Path | None = None,
    max_batches: int | None = None,
) -> Path | None:
    """Landscapes of the best seed of each configuration of `study` (`runs_table`: a
    runs.parquet or its frame), then `out_dir/sharpness.parquet` (one row per landscape).
    None if interrupted by max_batches."""
    from nnopt.train.data import load_dataset
    from nnopt.landscape.tables import read_sharpness

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = runs_table if isinstance(runs_table, pl.DataFrame) else pl.read_parquet(runs_table)
    if study not in set(runs["study"]):
        known = ", ".join(sorted(set(runs["study"])))
        where = "the runs table" if isinstance(runs_table, pl.DataFrame) else runs_table
        raise SpecError(f"--study {study}: no runs of this study in {where}; studies: {known}")
    chosen = select_landscape_runs(runs, study)
    datasets: dict[Any, Any] = {}
    failed = []
    for config, run_id in chosen.select("config", "run_id").iter_rows():
        run_dir = Path(runs_root) / study / run_id
        try:
            spec = parse_spec(json.loads((run_dir / "metrics.json").read_text())["spec"])
            if spec.data not in datasets:
                datasets[spec.data] = load_dataset(spec.data, data_cache)
            done = landscape_run(
                run_dir, out_dir, settings, dataset=datasets[spec.data], max_batches=max_batches
            )
        except Exception as err:  # recorded and shown; the other runs and the report go on
            traceback.print_exc(file=sys.stderr)
            failed.append(
                {"run_id": run_id, "config": config, "error": f"{type(err).__name__}: {err}"}
            )
            continue
        if done is None:
            return None
    _drop_unchosen(out_dir, set(chosen["run_id"]))
    write_json(failed, out_dir / "failed.json")
    table = read_sharpness(out_dir)
    path = out_dir / "sharpness.parquet"
    atomic_write(path, lambda tmp: table.write_parquet(tmp))
    return path


def _drop_unchosen(out_dir: Path, chosen: set[str]) -> None:
    """Remove landscapes of runs no longer chosen (e.g. another seed became the best)."""
    for path in [*out_dir.glob("*.parquet"), *out_dir.glob("*.json")]:
        if path.stem not in RESERVED_STEMS and path.stem not in chosen:
            path.unlink()
