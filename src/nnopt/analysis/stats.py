"""Statistics for the report: intervals, two-sample tests, Holm, effect sizes, tied ranks.

Every test and interval comes from scipy.stats; this module only chooses among them and
handles the edge cases (tiny n, zero variance, censored values). The rules, stated once:

* **Confidence interval of a mean** — Student t (`scipy.stats.t`) by default. A BCa bootstrap
  (`scipy.stats.bootstrap`) is used instead when the sample is skewed (|skewness| > 1) *and*
  n >= 10. With fewer values the bootstrap is not used even for skewed data: percentile and
  BCa intervals are known to be too narrow for n < 10 (Hesterberg 2015, "What teachers should
  know about the bootstrap", §3), while the t interval stays close to nominal unless the
  skew is extreme. Seeds per configuration are usually 3-10, so most intervals are t.
* **Two-sample test** — Welch's t-test (`ttest_ind(equal_var=False)`), which keeps its level
  with unequal variances and small n for roughly symmetric data. A Mann-Whitney test replaces
  it when the metric is censored (time-to-target: a run that never reached the target is +inf,
  which ranks above every finite value) or when both groups have n >= 8 and one of them has
  |skewness| > 1. Its p-value is a permutation test on the pooled ranks (`permutation_p`:
  exact, i.e. every relabelling, up to `MAX_EXACT` of them, else `N_RESAMPLES` seeded ones),
  so ties never fall back to the normal approximation, which is anti-conservative at n = 5.
  A normality pre-test (Shapiro) is deliberately not used: at n = 5 it has almost no power.
* **Zero variance** — two constant groups of a stochastic metric (epochs to target can be
  constant across 5 seeds) get the permutation test of their means (test "permutation"): p is
  never below the exact floor `min_p` (2/252 for 5 vs 5), never 0. Deterministic metrics
  (bytes) are compared, not tested, by nnopt.analysis.inference.
* **Multiple comparisons** — Holm's step-down adjustment (`holm`) across a family.
* **Effect size** — Hedges' g (bias-corrected standardized mean difference) with Welch;
  Cliff's delta (P(a > b) - P(a < b), from the U statistic) with Mann-Whitney.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = [
    "CONFIDENCE",
    "Description",
    "Comparison",
    "describe",
    "t_interval",
    "bootstrap_interval",
    "ci_method",
    "compare",
    "compare_many",
    "welch_from_stats",
    "holm",
    "hedges_g",
    "cliffs_delta",
    "rank_with_ties",
    "permutation_p",
    "permutation_p_reference",
    "min_p",
    "MAX_EXACT",
    "N_RESAMPLES",
]

CONFIDENCE = 0.95
_SKEW_LIMIT = 1.0
_BOOTSTRAP_MIN_N = 10
_MW_MIN_N = 8
_N_RESAMPLES = 2000
MAX_EXACT = 10_000  # arrangements enumerated exactly (5 vs 5 seeds: 252; 10 paired: 1024)
N_RESAMPLES = 9_999  # random arrangements above that, seeded: p = (k + 1) / (N + 1) > 0


@dataclass(frozen=True)
class Description:
    n: int  # finite values used for mean/std/CI
    mean: float
    std: float
    ci_low: float
    ci_high: float
    ci_method: str  # t | bootstrap | none
    median: float
    q25: float
    q75: float


@dataclass(frozen=True)
class Comparison:
    diff: float  # mean(a) - mean(b) (Welch/exact) or median(a) - median(b) (Mann-Whitney)
    diff_ci_low: float
    diff_ci_high: float
    test: str  # welch | mannwhitney | permutation | none
    p: float
    effect_size: float
    effect_kind: str  # hedges_g | cliffs_delta | none


def _skew(values: np.ndarray) -> float:
    # Skewness only decides anything from n >= _MW_MIN_N (8) up; scipy's call is costly.
    if len(values) < _MW_MIN_N or np.ptp(values) == 0:
        return 0.0
    return float(sps.skew(values, bias=False))


def t_interval(mean, std, n, confidence: float = CONFIDENCE):
    """Student-t interval mean ± t_{(1+c)/2, n-1} · std/sqrt(n); arrays welcome, nan for n < 2."""
    mean, std, n = (np.asarray(x, dtype=float) for x in (mean, std, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(n >= 2, n - 1, np.nan)
        half = sps.t.ppf(0.5 + confidence / 2, df) * std / np.sqrt(n)
    return mean - half, mean + half


def bootstrap_interval(values, confidence: float = CONFIDENCE, seed: int = 0):
    """BCa bootstrap interval of the mean (percentile when BCa is degenerate)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    for method in ("BCa", "percentile"):
        res = sps.bootstrap(
            (values,), np.mean, confidence_level=confidence, n_resamples=_N_RESAMPLES,
            method=method, rng=rng,
        )
        low, high = res.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high)
    return math.nan, math.nan


def ci_method(n: int, skewness: float) -> str:
    """Which interval the rules above pick for a sample of size n and given skewness."""
    if n < 2:
        return "none"
    if n >= _BOOTSTRAP_MIN_N and abs(skewness) > _SKEW_LIMIT:
        return "bootstrap"
    return "t"


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    """Linear-interpolated quartiles; a quartile that falls between a finite value and +inf
    (a censored run) is +inf, not the nan numpy's interpolation would give."""
    finite = values[np.isfinite(values)]
    if len(finite) == len(values):
        return tuple(float(q) for q in np.quantile(values, [0.25, 0.5, 0.75]))
    top = finite.max() if len(finite) else 0.0
    surrogate = np.where(np.isfinite(values), values, np.finfo(float).max)
    q = np.quantile(surrogate, [0.25, 0.5, 0.75])
    return tuple(float(x) if x <= top else math.inf for x in q)


def describe(values, *, confidence: float = CONFIDENCE, seed: int = 0) -> Description:
    """Mean, std (ddof=1), CI, median and quartiles of the finite values (censored +inf kept
    for the median and quartiles only; mean/std/CI are nan if any value is infinite)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return Description(0, *([math.nan] * 4), "none", *([math.nan] * 3))
    q25, median, q75 = _quartiles(values)
    if not np.all(np.isfinite(values)):  # censored: never average as if reached
        return Description(len(values), *([math.nan] * 4), "none", median, q25, q75)
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    method = ci_method(len(values), _skew(values))
    if method == "bootstrap":
        low, high = bootstrap_interval(values, confidence, seed)
    elif method == "t":
        low, high = (float(x) for x in t_interval(mean, std, len(values), confidence))
    else:
        low = high = math.nan
    return Description(len(values), mean, std, low, high, method, median, q25, q75)


def hedges_g(a, b) -> float:
    """(mean(a) - mean(b)) / pooled sd, times the small-sample correction 1 - 3/(4(n1+n2)-9)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n1, n2 = len(a), len(b)
    pooled = math.sqrt(((n1 - 1) * a.var(ddof=1) + (n2 - 1) * b.var(ddof=1)) / (n1 + n2 - 2))
    if pooled == 0:
        return math.nan
    return (a.mean() - b.mean()) / pooled * (1 - 3 / (4 * (n1 + n2) - 9))


def cliffs_delta(a, b) -> float:
    """P(a > b) - P(a < b) over all pairs (ties count half each way: 2U/(n_a n_b) - 1 with
    the Mann-Whitney U of a; +inf ties +inf)."""
    a, b = np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[None, :]
    return float(np.mean(a > b) - np.mean(a < b))


def _median_diff(a: np.ndarray, b: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        diff = float(np.median(a) - np.median(b))
    return diff if not math.isnan(diff) else math.nan


def _clean(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[~np.isnan(x)]


def _choose_test(a: np.ndarray, b: np.ndarray, censored: bool) -> str:
    """The rule of the module docstring: none | permutation | mannwhitney | welch."""
    if len(a) < 2 or len(b) < 2:
        return "none"
    finite = np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    if finite and np.ptp(a) == 0 and np.ptp(b) == 0:
        return "permutation"
    skewed = min(len(a), len(b)) >= _MW_MIN_N and max(abs(_skew(a)), abs(_skew(b))) > _SKEW_LIMIT
    return "mannwhitney" if censored or not finite or skewed else "welch"


def compare(a, b, *, censored: bool = False, deterministic: bool = False,
            confidence: float = CONFIDENCE) -> Comparison:
    """Compare sample a with sample b (b = baseline) by the rules in the module docstring;
    a deterministic metric is compared, not tested (test "deterministic", p nan)."""
    a, b = _clean(a), _clean(b)
    test = _choose_test(a, b, censored)
    if deterministic and len(a) and len(b):
        diff = float(a.mean() - b.mean())
        return Comparison(diff, diff, diff, "deterministic", math.nan, math.nan, "none")
    if test == "none":
        return Comparison(math.nan, math.nan, math.nan, "none", math.nan, math.nan, "none")
    if test == "permutation":
        diff = float(a[0] - b[0])
        p = permutation_p(a, b) if diff != 0 else 1.0
        return Comparison(diff, diff, diff, "permutation", p, math.nan, "none")
    if test == "mannwhitney":
        ranks = sps.rankdata(np.concatenate([a, b]))
        p = permutation_p(ranks[: len(a)], ranks[len(a):]) if np.ptp(ranks) > 0 else 1.0
        return Comparison(
            _median_diff(a, b), math.nan, math.nan, "mannwhitney", p,
            float(cliffs_delta(a, b)), "cliffs_delta",
        )
    with warnings.catch_warnings():
        # Nearly identical samples (e.g. deterministic timings) warn about precision loss;
        # the result is still the right answer for the data, so keep the report quiet.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.ttest_ind(a, b, equal_var=False)
        low, high = res.confidence_interval(confidence)
    return Comparison(
        float(a.mean() - b.mean()), float(low), float(high), "welch", float(res.pvalue),
        float(hedges_g(a, b)), "hedges_g",
    )


def welch_from_stats(mean_a, var_a, n_a, mean_b, var_b, n_b, confidence: float = CONFIDENCE):
    """Vectorized Welch tests from summary statistics (arrays over configurations): the fast
    path of `compare` for many configurations against one baseline; tests check they agree.
    Returns (diff, ci_low, ci_high, p, hedges_g) arrays."""
    mean_a, var_a, n_a, mean_b, var_b, n_b = (
        np.asarray(x, dtype=float) for x in (mean_a, var_a, n_a, mean_b, var_b, n_b))
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = sps.ttest_ind_from_stats(mean_a, np.sqrt(var_a), n_a, mean_b, np.sqrt(var_b), n_b,
                                     equal_var=False).pvalue
        se2_a, se2_b = var_a / n_a, var_b / n_b
        df = (se2_a + se2_b) ** 2 / (se2_a**2 / (n_a - 1) + se2_b**2 / (n_b - 1))  # Welch-Satterthwaite
        half = sps.t.ppf(0.5 + confidence / 2, df) * np.sqrt(se2_a + se2_b)
        pooled = np.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / (n_a + n_b - 2))
        g = (mean_a - mean_b) / pooled * (1 - 3 / (4 * (n_a + n_b) - 9))
    diff = mean_a - mean_b
    return diff, diff - half, diff + half, p, np.where(pooled == 0, np.nan, g)


def compare_many(samples, baseline, *, censored: bool = False, deterministic: bool = False,
                 confidence: float = CONFIDENCE) -> list[Comparison]:
    """[compare(s, baseline) for s in samples], with all Welch cases in one vectorized call."""
    b = _clean(baseline)
    cleaned = [_clean(s) for s in samples]
    tests = ["deterministic" if deterministic else _choose_test(a, b, censored)
             for a in cleaned]
    out: list[Comparison | None] = [
        None if t == "welch" else compare(a, b, censored=censored, deterministic=deterministic,
                                          confidence=confidence)
        for a, t in zip(cleaned, tests)]
    idx = [i for i, t in enumerate(tests) if t == "welch"]
    if idx:
        stats_a = [(cleaned[i].mean(), cleaned[i].var(ddof=1), len(cleaned[i])) for i in idx]
        m, v, n = (np.array(col) for col in zip(*stats_a))
        diff, low, high, p, g = welch_from_stats(m, v, n, b.mean(), b.var(ddof=1), len(b),
                                                 confidence)
        for k, i in enumerate(idx):
            out[i] = Comparison(float(diff[k]), float(low[k]), float(high[k]), "welch",
                                float(p[k]), float(g[k]), "hedges_g")
    return out


def _mean_diff(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def permutation_p(a, b, *, paired: bool = False) -> float:
    """Two-sided permutation p of mean(a) - mean(b): relabellings of the pooled values, or
    (paired) sign flips of the per-pair differences. Exact up to MAX_EXACT arrangements
    (enumerated here in one vectorized pass; `permutation_p_reference` is scipy's
    `permutation_test` and tests check they agree), else N_RESAMPLES seeded random ones. The
    observed arrangement counts, so p >= min_p and never 0. Two-sided as scipy defines it:
    twice the smaller one-sided p, capped at 1."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    count = 2 ** len(a) if paired else math.comb(len(a) + len(b), len(a))
    if count > MAX_EXACT:
        return permutation_p_reference(a, b, paired=paired)
    if paired:
        d = a - b
        null = (_sign_patterns(len(d)) * d).mean(axis=1)  # (2^n,)
        observed = d.mean()
    else:
        pooled = np.concatenate([a, b])
        sum_a = _splits(len(a), len(pooled)) @ pooled  # (count,)
        null = sum_a / len(a) - (pooled.sum() - sum_a) / len(b)
        observed = a.mean() - b.mean()
    gamma = abs(observed) * 1e-12 + 1e-300  # floating-point ties count as ties (as scipy)
    less, greater = np.mean(null <= observed + gamma), np.mean(null >= observed - gamma)
    return float(min(1.0, 2 * min(less, greater)))


def permutation_p_reference(a, b, *, paired: bool = False) -> float:
    """`permutation_p` by scipy.stats.permutation_test (exact up to MAX_EXACT arrangements)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    count = 2 ** len(a) if paired else math.comb(len(a) + len(b), len(a))
    n_resamples = np.inf if count <= MAX_EXACT else N_RESAMPLES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.permutation_test((a, b), _mean_diff, vectorized=True, n_resamples=n_resamples,
                                   permutation_type="samples" if paired else "independent",
                                   alternative="two-sided", rng=np.random.default_rng(0))
    return float(min(1.0, res.pvalue))


@functools.lru_cache(maxsize=64)
def _splits(n_a: int, n_total: int) -> np.ndarray:
    """(C(n_total, n_a), n_total) 0/1 matrix: row k marks the k-th choice of a's members."""
    combos = np.array(list(itertools.combinations(range(n_total), n_a)), dtype=np.intp)
    mask = np.zeros((len(combos), n_total))
    np.put_along_axis(mask, combos, 1.0, axis=1)
    return mask


@functools.lru_cache(maxsize=64)
def _sign_patterns(n: int) -> np.ndarray:
    """(2^n, n) matrix of ±1: every sign pattern of n paired differences."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    return 1.0 - 2.0 * bits


def min_p(n_a: int, n_b: int, paired: bool = False) -> float:
    """Smallest two-sided p an exact permutation test can give: its two extreme arrangements
    out of 2^n sign patterns (paired) or C(n_a + n_b, n_a) relabellings (5 vs 5: 2/252)."""
    if paired:
        return min(1.0, 2 / 2**n_a)
    return min(1.0, 2 / math.comb(n_a + n_b, n_a)) if n_a and n_b else 1.0


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values; nan entries stay nan and do not count in m."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    # p_(i) * (m - i + 1), made monotone by a running max, capped at 1.
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adjusted
    return out


def rank_with_ties(means, lows, highs, *, higher_is_better: bool) -> np.ndarray:
    """Rank 1 = best. A configuration's rank is 1 + the number of configurations whose CI lies
    entirely on the better side of its own CI, so overlapping CIs share a rank."""
    means, lows, highs = (np.asarray(x, dtype=float) for x in (means, lows, highs))
    # Without a CI (n < 2) the mean stands in for both ends.
    lows = np.where(np.isnan(lows), means, lows)
    highs = np.where(np.isnan(highs), means, highs)
    if higher_is_better:
        better = lows[None, :] > highs[:, None]  # [i, j]: j is clearly better than i
    else:
        better = highs[None, :] < lows[:, None]
    ranks = 1 + better.sum(axis=1)
    return np.where(np.isnan(means), np.nan, ranks)
