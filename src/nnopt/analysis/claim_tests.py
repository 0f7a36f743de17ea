"""The tests behind one claim on one problem: selecting runs, and one test per compared pair.

`ClaimRuns` holds one study's runs on one problem and turns configuration selectors into
samples by the declared counting rule (nnopt.analysis.aggregate.counted: a diverged run counts
as chance accuracy and as never reached; stalled runs keep their values), each value with its
seed so that tests can pair. `tests_for(claim, runs)` gives the claim's tests as dicts with a
`result` (nnopt.analysis.inference.TwoSample), `want` (+1: the claim says the left/first sample
is larger), the counts `n` (runs of the compared configurations) and `n_used`, and a line of
evidence. `separation(frame, study, metric, best, runner_up)` applies the same rule to a
headline: is the best configuration ahead of the runner-up, or tied with it? `pool: best` picks each selector's best configuration by a validation metric
(`SELECTION_METRICS`), never by the test metric it then tests.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import polars as pl
from scipy import stats as sps

from nnopt.analysis import inference, labels
from nnopt.analysis.aggregate import counted, format_value, target_is_set
from nnopt.config.metrics import metric_info
from nnopt.config.studies import Study

__all__ = ["SELECTION_METRICS", "ClaimRuns", "selector", "tests_for", "describe_sample",
           "separation"]

# Validation metrics for `pool: best`, in order of preference: (metric, higher is better).
SELECTION_METRICS = (("best_val_accuracy", True), ("final_val_loss", False))
_NOT_LEARNING = ("diverged", "stalled")


def selector(study: Study, sel: Any) -> dict[str, str]:
    """A configuration selector as {factor: formatted value}; a scalar means the study's rows
    factor (or its first factor)."""
    if isinstance(sel, Mapping):
        return {str(k): format_value(v) for k, v in sel.items()}
    key = study.rows or (study.factor_keys[0] if study.factor_keys else "")
    return {key: format_value(sel)}


class ClaimRuns:
    """One study's runs on one problem, selected by configuration selectors."""

    def __init__(self, frame: pl.DataFrame, study: Study, pool: str = "all"):
        self.study, self.pool, self.frame = study, pool, frame
        self.chosen: dict[str, str] = {}  # selector label → configuration picked by pool=best

    def label(self, sel: Mapping[str, str]) -> str:
        """The selector as the report names configurations ('relu', 'sgd, lr=0.1')."""
        return labels.display_label(sel, self.study) or ", ".join(sel.values())

    def select(self, sel: Mapping[str, str]) -> pl.DataFrame:
        missing = [k for k in sel if k not in self.frame.columns]
        if missing:
            raise LookupError(f"{missing[0]} is not a factor of study {self.study.name}")
        part = self.frame.filter(*[pl.col(k) == v for k, v in sel.items()])
        if part.height == 0:
            raise LookupError(f"no configuration of {self.study.name} has "
                              + ", ".join(f"{k}={v}" for k, v in sel.items()))
        if self.pool == "best" and part["config"].n_unique() > 1:
            part = part.filter(pl.col("config") == self._best_config(part))
            self.chosen[self.label(sel)] = labels.short_labels(part, self.study)[part["config"][0]]
        return part

    def _best_config(self, part: pl.DataFrame) -> str:
        for metric, higher in SELECTION_METRICS:
            if metric in part.columns and part[metric].drop_nulls().len():
                scores = (self.counted(part, metric).group_by("config")
                          .agg(pl.col("value").mean().alias("score")).drop_nulls("score"))
                return scores.sort("score", descending=higher)["config"][0]
        raise LookupError(f"pool: best needs a validation metric "
                          f"({', '.join(m for m, _ in SELECTION_METRICS)}); none was measured")

    @staticmethod
    def counted(part: pl.DataFrame, metric: str) -> pl.DataFrame:
        """The runs that count for `metric` with their `value` (declared rule; null dropped)."""
        keep, diverged_as = counted(metric)
        if "n_classes" not in part.columns:  # tables written before the column existed
            part = part.with_columns(n_classes=pl.lit(None, dtype=pl.Float64))
        value = pl.col(metric).cast(pl.Float64)
        if diverged_as == "chance":
            value = pl.when(pl.col("status") == "diverged").then(1 / pl.col("n_classes")) \
                .otherwise(value)
        elif diverged_as == "never reached":  # only where a target was set
            value = pl.when(value.is_null() & target_is_set(pl.lit(metric))) \
                .then(float("inf")).otherwise(value)
        return (part.filter(pl.col("status").is_in(keep)).with_columns(value=value)
                .filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan()))

    def sample(self, sel: Mapping[str, str], metric: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(values, seeds, n): the counted values, their seeds, and all runs of the selection."""
        part = self.select(sel)
        if metric not in part.columns:
            raise LookupError(f"metric {metric} was not measured")
        used = self.counted(part, metric)
        return (used["value"].to_numpy().astype(float), used["seed"].to_numpy(), part.height)


def describe_sample(vals: np.ndarray, metric: str, n: int) -> str:
    """'54.1 ± 1.7 % (n_used 5 of 5)', or a median for censored metrics."""
    info = metric_info(metric)
    counts = f"n_used {len(vals)} of {n}"
    if len(vals) == 0:
        return f"no usable runs ({counts})"
    if info.censored:
        reached = int(np.isfinite(vals).sum())
        med = float(np.median(vals))
        if not np.isfinite(med):
            return f"never reached ({reached} reached; {counts})"
        return f"median {med * info.scale:.{info.digits}f} {info.unit} ({reached} reached; {counts})"
    mean = float(np.mean(vals)) * info.scale
    half = (sps.t.ppf(0.975, len(vals) - 1) * np.std(vals, ddof=1) / math.sqrt(len(vals))
            * info.scale) if len(vals) > 1 else math.nan
    ci = f" ± {half:.{info.digits}f}" if math.isfinite(half) and half > 0 else ""
    return f"{mean:.{info.digits}f}{ci} {info.unit} ({counts})".replace("  ", " ")


def _pair(runs: ClaimRuns, metric: str, a_sel, b_sel, want: int, what: str,
          margin) -> dict:
    """Test a against b; `want` = +1 if the claim says a's metric is larger, -1 if smaller."""
    a, seeds_a, n_a = runs.sample(a_sel, metric)
    b, seeds_b, n_b = runs.sample(b_sel, metric)
    r = inference.two_sample(a, b, metric=metric, seeds_a=seeds_a, seeds_b=seeds_b,
                             margin=margin)
    evidence = (f"{runs.label(a_sel)}: {describe_sample(a, metric, n_a)} vs {runs.label(b_sel)}: "
                f"{describe_sample(b, metric, n_b)}")
    return {"label": what, "result": r, "want": want, "n": n_a + n_b, "n_used": len(a) + len(b),
            "evidence": evidence, "metric": metric}


def tests_for(claim, runs: ClaimRuns) -> list[dict]:
    r, study, metric, margin = claim.raw, runs.study, claim.metric, claim.margin
    sel = lambda x: selector(study, x)  # noqa: E731 (short local alias)
    if claim.kind in ("greater", "less"):
        want = 1 if claim.kind == "greater" else -1
        return [_pair(runs, metric, sel(r["left"]), sel(r["right"]), want, claim.kind, margin)]
    if claim.kind == "ordering":
        want = -1 if r.get("direction", "increasing") == "increasing" else 1
        configs = [sel(c) for c in r["configs"]]
        return [_pair(runs, metric, a, b, want, f"{runs.label(a)} vs {runs.label(b)}", margin)
                for a, b in zip(configs, configs[1:])]
    if claim.kind == "best":
        return _best_tests(claim, runs)
    if claim.kind == "ratio":
        return [_ratio_test(claim, runs)]
    return [_divergence_test(runs, sel(r["left"]), sel(r["right"]))]


def separation(frame: pl.DataFrame, study: Study, metric: str, best: str, runner_up: str,
               alpha: float = 0.05) -> dict:
    """The test of configuration `best` (a `config` label of `frame`) against `runner_up` on
    `metric`, in the metric's own direction, decided by the claims' rule (pairing, counting
    rule, default margin, nnopt.analysis.inference.decide) as a family of one: `verdict` is
    "supported" only when best is significantly ahead by more than the margin; the dict is a
    `tests_for` test with `p_holm` (= p), `verdict` and `seeds_needed`."""
    want = 1 if metric_info(metric).higher_is_better else -1
    test = _pair(ClaimRuns(frame, study), metric, {"config": best}, {"config": runner_up},
                 want, "best vs runner-up", None)
    r = test["result"]
    test["p_holm"] = r.p
    test["verdict"], test["seeds_needed"] = inference.decide(
        r, want=want, p_adjusted=r.p, p_tost_adjusted=r.p_tost, alpha=alpha, family_size=1)
    return test


def _best_tests(claim, runs: ClaimRuns) -> list[dict]:
    r, info = claim.raw, metric_info(claim.metric)
    direction = r.get("direction", "auto")
    want = 1 if (direction == "max" or (direction == "auto" and info.higher_is_better)) else -1
    best = selector(runs.study, r["config"])
    if r.get("among"):
        others = [selector(runs.study, c) for c in r["among"]]
    else:  # every other configuration of the study
        keys = list(runs.study.factor_keys)
        combos = runs.frame.select(keys).unique(maintain_order=True).iter_rows(named=True)
        others = [dict(c) for c in combos]
    others = [o for o in others if not all(o.get(k) == v for k, v in best.items())]
    return [_pair(runs, claim.metric, best, o, want, f"vs {runs.label(o)}", claim.margin)
            for o in others]


def _ratio_test(claim, runs: ClaimRuns) -> dict:
    """mean(left)/mean(right) against a bound, on log values: log(left) - log(bound) vs
    log(right); the margin is log(1 + 10 %) unless the claim sets a relative one."""
    r = claim.raw
    left, right = selector(runs.study, r["left"]), selector(runs.study, r["right"])
    a, seeds_a, n_a = runs.sample(left, claim.metric)
    b, seeds_b, n_b = runs.sample(right, claim.metric)
    bound, want = (r["at_least"], 1) if r.get("at_least") is not None else (r["at_most"], -1)
    keep_a, keep_b = np.isfinite(a) & (a > 0), np.isfinite(b) & (b > 0)
    a, seeds_a, b, seeds_b = a[keep_a], seeds_a[keep_a], b[keep_b], seeds_b[keep_b]
    rel = claim.margin if isinstance(claim.margin, str) else "10%"
    metric = claim.metric if claim.metric in inference.DETERMINISTIC else "log_ratio"
    res = inference.two_sample(np.log(a) - math.log(bound), np.log(b), metric=metric,
                               seeds_a=seeds_a, seeds_b=seeds_b,
                               margin=math.log1p(float(rel.rstrip("% ")) / 100))
    ratio = math.exp(np.log(a).mean() - np.log(b).mean()) if len(a) and len(b) else math.nan
    evidence = (f"{runs.label(left)}/{runs.label(right)} ratio of geometric means {ratio:.2f} "
                f"(claimed {'≥' if want > 0 else '≤'} {bound:g}; n_used {len(a)} of {n_a}, "
                f"{len(b)} of {n_b}); on logs")
    return {"label": "ratio", "result": res, "want": want, "n": n_a + n_b,
            "n_used": len(a) + len(b), "evidence": evidence, "metric": "log_ratio"}


def _divergence_test(runs: ClaimRuns, left, right) -> dict:
    """Fisher's exact test on runs that did not learn (diverged or stalled) vs learned (ok);
    left is claimed to fail more often."""
    counts, totals = [], []
    for sel in (left, right):
        status = runs.select(sel)["status"]
        counts.append([int(status.is_in(_NOT_LEARNING).sum()), int((status == "ok").sum())])
        totals.append(status.len())
    usable = min(map(sum, counts)) > 0
    p = float(sps.fisher_exact(counts).pvalue) if usable else None
    rate = [f / (f + o) if f + o else math.nan for f, o in counts]
    effect = rate[0] - rate[1]
    res = inference.TwoSample("fisher", False, sum(counts[0]), sum(counts[1]), effect,
                              math.nan, math.nan, p, None, math.nan, math.nan)
    evidence = (f"{runs.label(left)}: {counts[0][0]} of {sum(counts[0])} did not learn "
                f"(diverged or stalled) vs {runs.label(right)}: {counts[1][0]} of "
                f"{sum(counts[1])}")
    return {"label": "did not learn", "result": res, "want": 1, "n": sum(totals),
            "n_used": sum(map(sum, counts)), "evidence": evidence, "metric": "status"}
