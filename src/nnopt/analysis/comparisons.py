"""The comparisons table: each configuration against its study's baseline, per compared metric.

Paired by seed when both have the same seeds (nnopt.analysis.inference), else unpaired
(nnopt.analysis.stats.compare_many); Holm-adjusted within the study, with tied ranks.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from nnopt.analysis import inference, stats
from nnopt.analysis.inference import DETERMINISTIC
from nnopt.analysis.summary import long_values, nan_to_null, study_metrics
from nnopt.config.metrics import metric_info
from nnopt.config.study_rules import format_value
from nnopt.config.studies import Config, Study

__all__ = ["compare_to_baseline"]


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
    pairs = study_metrics(config, runs).filter("compared")
    grouped = long_values(runs, pairs).group_by("study", "config", "metric").agg(
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
            .with_columns(nan_to_null(table.schema)))
