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
Statistics rules live in nnopt.analysis.stats; metric directions and units in nnopt.config.metrics.

A tuned study's search runs (given as `searched`) join runs.parquet and curves.parquet with
their `phase` (`trial`, pruned ones with status `pruned`; `confirm`), beside the study's own
runs (`default`); the summary and the comparisons use `compared_runs` only: the confirmation
runs of a study whose search has them, else its own runs.

Statuses are outcomes, not missing data. `stalled` is set here: an ok run whose best validation
accuracy (final train accuracy without validation) is at most chance, 1/n_classes, plus
`STALL_MARGIN` (5 points) never learned. The declared rule of every comparison (`counted`):
a stalled run keeps its measured values; a diverged run counts as chance accuracy
(1/n_classes) in accuracy metrics and as never reached in to-target metrics, and is left out
(n_used < n) of every other metric, whose value it never measured.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

from nnopt.analysis import stats
from nnopt.analysis import inference
from nnopt.analysis.inference import DETERMINISTIC
from nnopt.config.metrics import CENSORED, METRICS, SUMMARY_METRICS, metric_info
from nnopt.config.spec import SpecError
from nnopt.config.check import read_yaml
from nnopt.config.studies import Config, Run, Study, parse_config
from nnopt.store.atomic import atomic_path
from nnopt.store.plan_file import PLAN_FORMAT, Plan

__all__ = [
    "STATUSES",
    "STALL_MARGIN",
    "chance_classes",
    "mark_stalled",
    "counted",
    "read_config",
    "load_runs",
    "PHASES",
    "compared_runs",
    "load_curves",
    "summarize",
    "compare_to_baseline",
    "study_frame",
    "format_value",
    "target_is_set",
    "aggregate",
    "write_parquet_atomic",
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
}
_CURVE_SCHEMA: dict[str, Any] = {
    "step": pl.Int64, "epoch": pl.Float64, "train_time_s": pl.Float64, "lr": pl.Float64,
    "train_loss": pl.Float64, "train_accuracy": pl.Float64, "val_loss": pl.Float64,
    "val_accuracy": pl.Float64, "grad_norm": pl.Float64, "weight_norm": pl.Float64,
    "layer_grad_norms": pl.List(pl.Float64),
}


def format_value(value: Any) -> str:
    """A factor value as the config label writes it (nnopt.config.studies.config_label)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


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
    raw = read_yaml(path)  # the strict loader (JSON is YAML): duplicate keys, tags refused  # the strict loader: duplicate keys and tags refused
    try:
        return parse_config(raw)
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None


# --- runs ---------------------------------------------------------------------------------


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
                                                "started_at", "finished_at")},
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
    runs_dir, rows, metric_keys = Path(runs_dir), [], dict.fromkeys(METRICS)
    factor_keys = dict.fromkeys(k for s in config.studies for k in s.factor_keys)
    searched = searched or {}
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


def compared_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """The rows comparisons, summaries and claims use: a study's confirmation runs when its
    search has any (fresh seeds, chosen values), else its own runs; never tuning trials."""
    if "phase" not in runs.columns:  # a table written before phases existed
        return runs
    confirmed = (pl.col("phase") == "confirm").any().over("study")
    return runs.filter(pl.when(confirmed).then(pl.col("phase") == "confirm")
                       .otherwise(pl.col("phase") == "default"))


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
    if keys.height == 0:
        return pl.DataFrame(schema={k: v for k, v in keys.schema.items() if k != "_path"}
                            | _CURVE_SCHEMA)
    scan = pl.scan_parquet(
        keys["_path"].to_list(), schema=_CURVE_SCHEMA, include_file_paths="_path",
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


# --- summary --------------------------------------------------------------------------------


def _study_metrics(config: Config, runs: pl.DataFrame) -> pl.DataFrame:
    """(study, metric, compared) pairs: a study's own metrics plus SUMMARY_METRICS present."""
    rows = []
    for s in config.studies:
        for m in dict.fromkeys([*s.metrics, *SUMMARY_METRICS]):
            if m in runs.columns:
                rows.append({"study": s.name, "metric": m, "compared": m in s.metrics})
    return pl.DataFrame(rows, schema={"study": pl.String, "metric": pl.String,
                                      "compared": pl.Boolean})


def _long_values(runs: pl.DataFrame, pairs: pl.DataFrame) -> pl.LazyFrame:
    """One row per run × metric used in statistics, by the declared rule (`counted`): ok and
    stalled runs; diverged runs as chance accuracy and, for to-target metrics, as never reached
    (+inf, where a target was set)."""
    metric_cols = pairs["metric"].unique().to_list()
    censored = pl.col("metric").is_in(list(CENSORED))
    chance = pl.col("metric").is_in([m for m in metric_cols if counted(m)[1] == "chance"])
    diverged = pl.col("status") == "diverged"
    return (
        runs.lazy()
        .unpivot(on=metric_cols, index=["study", "config", "run_id", "seed", "status",
                                        "n_classes", "target_val_accuracy",
                                        "target_train_loss"],
                 variable_name="metric", value_name="value")
        .join(pairs.lazy(), on=["study", "metric"], how="semi")  # each study's own metrics
        .filter(pl.col("status").is_in(["ok", "stalled"]) | ((censored | chance) & diverged))
        .with_columns(censored=censored)
        .with_columns(value=pl.when(chance & diverged).then(1 / pl.col("n_classes"))
                      .when(pl.col("censored") & pl.col("value").is_null()
                            & target_is_set(pl.col("metric")))
                      .then(float("inf")).otherwise(pl.col("value")))
        .filter(pl.col("value").is_not_null())
    )


def target_is_set(metric: pl.Expr) -> pl.Expr:
    """Whether the run had the target a to-target metric measures (loss or accuracy)."""
    target = (pl.when(metric.str.ends_with("_to_target_loss") | (metric == "time_to_target_loss_s"))
              .then(pl.col("target_train_loss")).otherwise(pl.col("target_val_accuracy")))
    return target.is_not_null()


_DESCRIBED = ["study", "config", "metric", "censored", "n_used", "n_reached", "mean", "std",
              "ci_low", "ci_high", "ci_method", "median", "q25", "q75"]


def _describe_groups(values: pl.LazyFrame) -> pl.DataFrame:
    """nnopt.analysis.stats.describe for every (study, config, metric) group. Finite samples with a
    t interval (most of them) are described in one vectorized pass; censored and bootstrap
    groups go through stats.describe itself (tests check both paths agree)."""
    v = pl.col("value")
    grouped = (
        values.group_by("study", "config", "metric", maintain_order=True)
        .agg(pl.col("censored").first(), n_used=pl.len(), n_finite=v.is_finite().sum(),
             mean=v.mean(), std=v.std(), median=v.median(),
             q25=v.quantile(0.25, "linear"), q75=v.quantile(0.75, "linear"),
             skew=v.skew(bias=False), value=v)
        .with_row_index("_row")
        .collect()
    )
    bootstrap = (pl.col("n_used") >= 10) & (pl.col("skew").abs() > 1)  # stats.ci_method rule
    fast = grouped.filter((pl.col("n_finite") == pl.col("n_used")) & ~bootstrap.fill_null(False))
    slow = grouped.filter(~pl.col("_row").is_in(fast["_row"].implode()))
    low, high = stats.t_interval(fast["mean"], fast["std"], fast["n_used"])
    fast = fast.with_columns(
        pl.Series("ci_low", low), pl.Series("ci_high", high),
        ci_method=pl.when(pl.col("n_used") >= 2).then(pl.lit("t")).otherwise(pl.lit("none")),
        n_reached=pl.when(pl.col("censored")).then(pl.col("n_finite")).cast(pl.Int64))
    rows = []
    for r in slow.iter_rows(named=True):
        d = stats.describe(np.asarray(r["value"], dtype=float))
        n_reached = int(np.isfinite(r["value"]).sum()) if r["censored"] else None
        rows.append((r["_row"], r["study"], r["config"], r["metric"], r["censored"], d.n,
                     n_reached, d.mean, d.std, d.ci_low, d.ci_high, d.ci_method, d.median,
                     d.q25, d.q75))
    slow_frame = pl.DataFrame(rows, schema=["_row", *_DESCRIBED], orient="row",
                              infer_schema_length=None)
    cast = {k: fast.schema[k] for k in ["_row", *_DESCRIBED] if k in fast.schema}
    fast = fast.select(["_row", *_DESCRIBED]).cast(cast)
    both = pl.concat([fast, slow_frame.cast(cast, strict=False)], how="vertical_relaxed")
    return both.sort("_row").drop("_row").with_columns(pl.col("n_used").cast(pl.Int64))


def summarize(runs: pl.DataFrame, config: Config) -> pl.DataFrame:
    """One row per study × configuration × metric (contract §4), in the config's order."""
    pairs = _study_metrics(config, runs)
    counts = runs.group_by("study", "config", maintain_order=True).agg(
        pl.col("config_index").first(), n=pl.len(),
        **{f"n_{s}": (pl.col("status") == s).sum() for s in STATUSES})
    # Every configuration gets a row per metric, even when no run of it is usable.
    grid = counts.join(pairs, on="study", how="inner")
    described = _describe_groups(_long_values(runs, pairs))
    factor_cols = [k for k in runs.columns if "." in k]
    factors = runs.group_by("study", "config").agg(pl.col(factor_cols).first())
    out = (grid.join(described, on=["study", "config", "metric"], how="left")
           .with_columns(pl.col("n_used").fill_null(0), pl.col("ci_method").fill_null("none"),
                         pl.col("censored").fill_null(pl.col("metric").is_in(list(CENSORED))))
           .join(factors, on=["study", "config"], how="left"))
    order = {s.name: i for i, s in enumerate(config.studies)}
    return (out.with_columns(_order=pl.col("study").replace_strict(order, return_dtype=pl.Int64))
            .sort("_order", "config_index", maintain_order=True)
            .select("study", "config", *factor_cols, pl.exclude("study", "config", "_order",
                                                                *factor_cols))
            .with_columns(_nan_to_null(out.schema)))


def _nan_to_null(schema: Mapping[str, Any]) -> list[pl.Expr]:
    """NaN means 'not computable' here (n < 2, censored mean): store it as null."""
    return [pl.col(k).fill_nan(None) for k, v in schema.items() if v == pl.Float64]


# --- comparisons -------------------------------------------------------------------------------


def _baseline_label(study: Study) -> str:
    """study.baseline's configuration (all its factor values match), else the first one."""
    want = {k: format_value(v) for k, v in study.baseline.items()}
    for run in study.runs:
        have = {k: format_value(v) for k, v in run.factors}
        if all(have.get(k) == v for k, v in want.items()):
            return run.config
    return study.runs[0].config


def _paired(a, seeds_a, b, seeds_b, metric: str) -> stats.Comparison:
    """A configuration against the baseline seed by seed (nnopt.analysis.inference rules:
    paired t-test, or the sign-flip permutation test for censored or constant differences)."""
    r = inference.two_sample(a, b, metric=metric, seeds_a=seeds_a, seeds_b=seeds_b)
    censored = r.test == "paired_permutation" and not np.all(np.isfinite(np.r_[a, b]))
    if censored or metric_info(metric).censored:
        effect, kind = stats.cliffs_delta(a, b), "cliffs_delta"
    else:
        effect, kind = stats.hedges_g(a, b), "hedges_g"
    return stats.Comparison(r.effect, r.ci_low, r.ci_high, r.test,
                            math.nan if r.p is None else r.p, float(effect), kind)


def _study_comparisons(study: Study, values: dict, seeds: dict) -> list[dict]:
    """Each configuration against the baseline: seed by seed when both have the same seeds
    (`_paired`), else by nnopt.analysis.stats.compare_many (unpaired)."""
    base = _baseline_label(study)
    labels = list(dict.fromkeys(r.config for r in study.runs))
    others = [c for c in labels if c != base]
    rows = []
    for metric in study.metrics:
        b = values.get((base, metric), [])
        deterministic = metric in DETERMINISTIC
        results = dict(zip(others, stats.compare_many(
            [values.get((c, metric), []) for c in others], b,
            censored=metric_info(metric).censored, deterministic=deterministic)))
        for c in others if not deterministic else ():
            sa, sb = seeds.get((c, metric), []), seeds.get((base, metric), [])
            if inference.is_paired(sa, sb) and results[c].test != "none":
                results[c] = _paired(np.asarray(values[(c, metric)], dtype=float), sa,
                                     np.asarray(b, dtype=float), sb, metric)
        for label in labels:
            c = results.get(label)
            rows.append({
                "study": study.name, "config": label, "baseline": base, "metric": metric,
                "is_baseline": label == base, "n": len(values.get((label, metric), [])),
                "n_base": len(b),
                "diff": c.diff if c else None, "diff_ci_low": c.diff_ci_low if c else None,
                "diff_ci_high": c.diff_ci_high if c else None, "test": c.test if c else "none",
                "p": c.p if c else None, "effect_size": c.effect_size if c else None,
                "effect_kind": c.effect_kind if c else "none",
            })
    p_holm = stats.holm([math.nan if r["p"] is None else r["p"] for r in rows])
    for row, p in zip(rows, p_holm):
        row["p_holm"] = None if math.isnan(p) else float(p)
    return rows


def _ranks(summary: pl.DataFrame, study: Study) -> pl.DataFrame:
    """Tied ranks per metric: by mean and CI, or by median for censored metrics."""
    frames = []
    for metric in study.metrics:
        part = summary.filter((pl.col("study") == study.name) & (pl.col("metric") == metric))
        if part.height == 0:
            continue
        info = metric_info(metric)
        if info.censored:
            centre = part["median"].to_numpy().astype(float)
            low = high = np.full(part.height, np.nan)
        else:
            centre, low, high = (part[c].to_numpy().astype(float)
                                 for c in ("mean", "ci_low", "ci_high"))
        ranks = stats.rank_with_ties(centre, low, high, higher_is_better=info.higher_is_better)
        frames.append(part.select("study", "config", "metric").with_columns(
            rank=pl.Series(ranks, dtype=pl.Float64).cast(pl.Int64, strict=False)))
    return pl.concat(frames) if frames else pl.DataFrame(
        schema={"study": pl.String, "config": pl.String, "metric": pl.String, "rank": pl.Int64})


def compare_to_baseline(runs: pl.DataFrame, summary: pl.DataFrame,
                        config: Config) -> pl.DataFrame:
    """Each configuration against its study's baseline, for each compared metric."""
    pairs = _study_metrics(config, runs).filter("compared")
    grouped = _long_values(runs, pairs).group_by("study", "config", "metric").agg(
        pl.col("value"), pl.col("seed")).collect()
    values: dict[str, dict] = {}
    seeds: dict[str, dict] = {}
    for study, label, metric, vals, seed in grouped.iter_rows():
        values.setdefault(study, {})[(label, metric)] = vals
        seeds.setdefault(study, {})[(label, metric)] = seed
    rows = [r for s in config.studies
            for r in _study_comparisons(s, values.get(s.name, {}), seeds.get(s.name, {}))]
    table = pl.DataFrame(rows, infer_schema_length=None, schema_overrides={
        "diff": pl.Float64, "diff_ci_low": pl.Float64, "diff_ci_high": pl.Float64,
        "p": pl.Float64, "p_holm": pl.Float64, "effect_size": pl.Float64})
    ranks = pl.concat([_ranks(summary, s) for s in config.studies])
    return (table.join(ranks, on=["study", "config", "metric"], how="left",
                       maintain_order="left")
            .with_columns(_nan_to_null(table.schema)))


def study_frame(frame: pl.DataFrame, study: Study) -> pl.DataFrame:
    """One study's rows with its factor columns typed again (from the config's values)."""
    part = frame.filter(pl.col("study") == study.name)
    typed = []
    for key in study.factor_keys:
        mapping = {format_value(v): v for r in study.runs for k, v in r.factors if k == key}
        values = list(mapping.values())
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            dtype = pl.Int64 if all(isinstance(v, int) for v in values) else pl.Float64
        elif all(isinstance(v, bool) for v in values):
            dtype = pl.Boolean
        else:
            dtype = pl.String
            mapping = {k: str(v) for k, v in mapping.items()}
        typed.append(pl.col(key).replace_strict(mapping, return_dtype=dtype, default=None))
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
