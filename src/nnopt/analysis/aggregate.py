"""Aggregation: run directories → runs, curves, summary and comparison tables (Polars).

`aggregate(config, runs_dir, out_dir)` reads every run the config expands to (a run with no
directory is status `missing`: shown, never dropped) and writes, atomically,

* `runs.parquet`        one row per run (docs/contract.md §4)
* `curves.parquet`      one row per run × evaluation point
* `summary.parquet`     one row per study × configuration × metric, seeds pooled
* `comparisons.parquet` one row per study × configuration × compared metric: against the
                        study's baseline (paired by seed when both have the same seeds),
                        Holm-adjusted within the study, with tied ranks

Factor values differ in type across studies (a float learning rate here, a string there), so
the cross-study tables hold every factor column as a string formatted like the config label
(`0.001`, `relu`, `true`) plus a `factors` column of JSON with the typed values;
`study_frame(frame, study)` gives one study's rows with its factor columns typed again.
The tables are built in nnopt.analysis.run_table (runs, curves), .summary and .comparisons;
this module reads the config or plan and writes them. Statistics rules live in
nnopt.analysis.stats; metric directions and units in nnopt.config.metrics.

A tuned study's search runs (given as `searched`) join runs.parquet and curves.parquet with
their `phase` (`trial`, pruned ones with status `pruned`; `confirm`), beside the study's own
runs (`default`); the summary and the comparisons use `compared_runs` only: the confirmation
runs of a study whose search has them, else its own runs.

Statuses are outcomes, not missing data. `stalled` is set by run_table: an ok run whose best validation
accuracy (final train accuracy without validation) is at most chance, 1/n_classes, plus
`STALL_MARGIN` (5 points) never learned. The declared rule of every comparison (`counted`):
a stalled run keeps its measured values; a diverged run counts as chance accuracy
(1/n_classes) in accuracy metrics and as never reached in to-target metrics, and is left out
(n_used < n) of every other metric, whose value it never measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from nnopt.analysis.comparisons import compare_to_baseline
from nnopt.analysis.run_table import (
    PHASES,
    STALL_MARGIN,
    STATUSES,
    SearchedRuns,
    compared_runs,
    chance_classes,
    counted,
    load_curves,
    load_runs,
    mark_stalled,
)
from nnopt.analysis.summary import summarize, target_is_set
from nnopt.config.check import read_yaml
from nnopt.config.spec import SpecError
from nnopt.config.study_rules import format_value
from nnopt.config.studies import Config, Study, parse_config
from nnopt.store.atomic import atomic_path
from nnopt.store.plan_file import PLAN_FORMAT, Plan

__all__ = [
    "STATUSES",
    "PHASES",
    "compared_runs",
    "STALL_MARGIN",
    "chance_classes",
    "mark_stalled",
    "counted",
    "read_config",
    "load_runs",
    "load_curves",
    "summarize",
    "compare_to_baseline",
    "study_frame",
    "format_value",
    "target_is_set",
    "aggregate",
    "write_parquet_atomic",
]


def _is_plan(path: Path) -> bool:
    """A plan file starts with its format tag (nnopt.store.atomic keeps the key order)."""
    try:
        with open(path, encoding="utf-8") as handle:
            head = handle.read(200)
    except (OSError, UnicodeDecodeError):
        return False
    return f'"format": "{PLAN_FORMAT}"' in head


def read_config(path: str | Path) -> Config:
    """The Config of a plan file (results/plan.json: exactly the runs the workflow planned,
    nothing expanded again, no data file opened) or of a YAML/JSON config; errors name it."""
    path = Path(path)
    if _is_plan(path):
        return Plan.load(path).config()
    if path.suffix == ".json":  # YAML 1.1 would read a JSON number such as 3e-05 as text
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SpecError(f"{path}: not a readable JSON config ({err})") from None
    else:
        raw = read_yaml(path)  # the strict loader: duplicate keys and tags refused
    try:
        return parse_config(raw)
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None


def _typed_factor(values: list) -> tuple[pl.DataType, list]:
    """(dtype, values cast to it) of one factor's config values: Int64 when all are ints,
    Float64 when all are numbers (a sweep such as [0, 0.1] mixes int and float: each is cast
    to float, as one Polars column holds one type), Boolean, else String."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if all(isinstance(v, int) for v in values):
            return pl.Int64, values
        return pl.Float64, [float(v) for v in values]
    if all(isinstance(v, bool) for v in values):
        return pl.Boolean, values
    return pl.String, [str(v) for v in values]


def study_frame(frame: pl.DataFrame, study: Study) -> pl.DataFrame:
    """One study's rows with its factor columns typed again (from the config's values)."""
    part = frame.filter(pl.col("study") == study.name)
    typed = []
    for key in study.factor_keys:
        mapping = {format_value(v): v for r in study.runs for k, v in r.factors if k == key}
        dtype, values = _typed_factor(list(mapping.values()))
        typed.append(pl.col(key).replace_strict(dict(zip(mapping, values)), return_dtype=dtype,
                                                default=None))
    return part.with_columns(typed)


# --- writing --------------------------------------------------------------------------------


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write via nnopt.store.atomic (unique temp name, fsync, rename; readers never see half)."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


def aggregate(config: Config, runs_dir: str | Path, out_dir: str | Path,
              searched: SearchedRuns | None = None) -> dict[str, Path]:  # fmt: skip
    """Build and write the four result tables; return their paths by name. runs.parquet and
    curves.parquet hold every run (search trials too, with their `phase`); the summary and
    the comparisons only the `compared_runs`."""
    out_dir = Path(out_dir)
    runs = load_runs(config, runs_dir, searched)
    compared = compared_runs(runs)
    summary = summarize(compared, config)
    tables = {
        "runs": runs,
        "curves": load_curves(runs, runs_dir),
        "summary": summary,
        "comparisons": compare_to_baseline(compared, summary, config),
    }
    paths = {}
    for name, frame in tables.items():
        paths[name] = out_dir / f"{name}.parquet"
        write_parquet_atomic(frame, paths[name])
    return paths
