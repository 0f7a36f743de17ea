"""The summary table: one row per study × configuration × metric, seeds pooled.

`summarize` pools each configuration's runs by the declared counting rule
(nnopt.analysis.run_table.counted) and describes them with nnopt.analysis.stats: a vectorized
pass for the finite t-interval groups, stats.describe itself for the rest.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import polars as pl

from nnopt.analysis import stats
from nnopt.analysis.run_table import STATUSES, counted
from nnopt.config.metrics import CENSORED, SUMMARY_METRICS
from nnopt.config.studies import Config

__all__ = ["long_values", "nan_to_null", "study_metrics", "summarize", "target_is_set"]


def study_metrics(config: Config, runs: pl.DataFrame) -> pl.DataFrame:
    """(study, metric, compared) pairs: a study's own metrics plus SUMMARY_METRICS present."""
    rows = []
    for s in config.studies:
        for m in dict.fromkeys([*s.metrics, *SUMMARY_METRICS]):
            if m in runs.columns:
                rows.append({"study": s.name, "metric": m, "compared": m in s.metrics})
    return pl.DataFrame(rows, schema={"study": pl.String, "metric": pl.String,
                                      "compared": pl.Boolean})


def long_values(runs: pl.DataFrame, pairs: pl.DataFrame) -> pl.LazyFrame:
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
    pairs = study_metrics(config, runs)
    counts = runs.group_by("study", "config", maintain_order=True).agg(
        pl.col("config_index").first(), n=pl.len(),
        **{f"n_{s}": (pl.col("status") == s).sum() for s in STATUSES})
    # Every configuration gets a row per metric, even when no run of it is usable.
    grid = counts.join(pairs, on="study", how="inner")
    described = _describe_groups(long_values(runs, pairs))
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
            .with_columns(nan_to_null(out.schema)))


def nan_to_null(schema: Mapping[str, Any]) -> list[pl.Expr]:
    """NaN means 'not computable' here (n < 2, censored mean): store it as null."""
    return [pl.col(k).fill_nan(None) for k, v in schema.items() if v == pl.Float64]
