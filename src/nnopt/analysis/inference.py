"""Inference behind a claim's verdict: the test that fits the data, relevance, equivalence, power.

`two_sample(a, b, metric=..., margin=...)` compares sample a with sample b (b = the reference)
and `decide(result, ...)` turns it into a verdict. The rules, stated once (the report repeats
them):

* **Deterministic metrics** (`DETERMINISTIC`: bytes and parameter counts, constant across seeds
  by construction) are compared, not tested: p is None, test "deterministic", and the verdict
  comes from the values and the margin.
* **Pairing.** When both samples carry the same set of seeds (seed k of A was trained with the
  same data order and initial draw as seed k of B, as every shipped study does), the test is
  paired on the per-seed differences; otherwise it is unpaired.
* **Means** of a finite metric: paired t-test on the differences (test "paired_t") or Welch's
  t-test (test "welch"); both give the t interval of the mean difference used for TOST.
* **Censored metrics** (time to target, +inf = never reached) and **constant samples** (a
  discretized metric such as epochs to target can be constant across seeds; t is undefined
  there): permutation tests with `scipy.stats.permutation_test` — sign flips of the per-seed
  differences ("paired_permutation") or relabelling of the pooled runs ("permutation"). A
  censored metric is replaced by its pooled ranks first (ties share a rank, +inf ranks last),
  which makes the unpaired test an exact Mann-Whitney test with ties. The test is exact (all
  2^n sign patterns or C(n_a+n_b, n_a) relabellings) when there are at most `MAX_EXACT`,
  otherwise `N_RESAMPLES` random ones with a fixed seed; the p-value counts the observed
  arrangement, so it is never 0 and never below `min_p` (2/2^n paired, 2/C(n_a+n_b, n_a)).
* **Relevance.** Every metric has a minimum relevant difference (`default_margin`: accuracy
  1 point, loss 0.02, everything else 10 % of the reference's mean), overridable per claim. A
  significant difference supports or contradicts a claim only when its estimate reaches the
  margin; one whose 95 % interval lies inside ±margin is *equivalent* (trivial).
* **Equivalence** (TOST, Lakens 2017): two one-sided t-tests against ±margin; p_tost is the
  larger of the two. With zero spread (bit-identical runs) the values decide.
* **Power.** `seeds_needed` is the seeds per configuration a decision needs: a normal-
  approximation power computation (80 %) for the margin on the observed spread at the
  family's strictest Holm level α/m, and for permutation tests at least the n whose `min_p`
  × m reaches α.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from nnopt.analysis.stats import min_p, permutation_p
from nnopt.config.metrics import metric_info

__all__ = ["DETERMINISTIC", "POWER", "TwoSample", "default_margin", "resolve_margin",
           "two_sample", "seeds_needed", "decide", "is_paired"]

DETERMINISTIC = frozenset({"param_bytes", "optimizer_state_bytes", "n_params", "n_classes"})
POWER = 0.8
_ACCURACY_MARGIN = 0.01  # accuracy is a fraction: 0.01 = 1 point
_LOSS_MARGIN = 0.02
_RELATIVE_MARGIN = 0.10


@dataclass(frozen=True)
class TwoSample:
    test: str  # deterministic | paired_t | welch | paired_permutation | permutation | fisher | none
    paired: bool
    n_a: int
    n_b: int
    effect: float  # mean(a) - mean(b); medians for censored metrics
    ci_low: float  # 95 % interval of the mean difference (nan when censored)
    ci_high: float
    p: float | None  # two-sided; None for deterministic metrics / nothing to test
    p_tost: float | None  # equivalence within ±margin; None when not computable
    spread: float  # sd of the differences (paired) or pooled sd (unpaired)
    margin: float  # absolute, in the metric's stored unit


def default_margin(metric: str) -> tuple[float, bool]:
    """(value, relative): the minimum relevant difference of a metric by its kind."""
    if "accuracy" in metric and not metric_info(metric).censored:
        return _ACCURACY_MARGIN, False
    if metric.endswith("loss"):
        return _LOSS_MARGIN, False
    return _RELATIVE_MARGIN, True


def resolve_margin(metric: str, reference: np.ndarray, override=None) -> float:
    """The absolute margin: an override (number, or 'N%' of the reference's mean) or the
    metric's default; a relative margin uses the mean of the reference's finite values (nan
    when it has none: a never-reached reference has no relevant difference to scale)."""
    value, relative = default_margin(metric)
    if isinstance(override, str):
        value, relative = float(override.rstrip("% ")) / 100, True
    elif override is not None:
        value, relative = float(override), False
    if not relative:
        return value
    finite = reference[np.isfinite(reference)]
    centre = abs(float(np.mean(finite))) if len(finite) else math.nan
    return value * centre


def is_paired(seeds_a, seeds_b) -> bool:
    sa, sb = list(seeds_a), list(seeds_b)
    return len(sa) >= 2 and len(set(sa)) == len(sa) and sorted(sa) == sorted(sb)


def _t_parts(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[float, float, float, float]:
    """(difference, standard error, degrees of freedom, spread) of the mean difference."""
    if paired:
        d = a - b
        sd = float(d.std(ddof=1))
        return float(d.mean()), sd / math.sqrt(len(d)), len(d) - 1, sd
    va, vb = a.var(ddof=1), b.var(ddof=1)
    se2a, se2b = va / len(a), vb / len(b)
    se = math.sqrt(se2a + se2b)
    denom = se2a**2 / (len(a) - 1) + se2b**2 / (len(b) - 1)
    df = (se2a + se2b) ** 2 / denom if denom > 0 else math.inf  # Welch-Satterthwaite
    pooled = math.sqrt(((len(a) - 1) * va + (len(b) - 1) * vb) / (len(a) + len(b) - 2))
    return float(a.mean() - b.mean()), se, df, pooled


def _tost(diff: float, se: float, df: float, margin: float) -> float | None:
    if not (se > 0 and margin > 0 and math.isfinite(margin)):
        return None
    p_lower = sps.t.sf((diff + margin) / se, df)  # H0: diff <= -margin
    p_upper = sps.t.cdf((diff - margin) / se, df)  # H0: diff >= +margin
    return float(max(p_lower, p_upper))


def _align(a, b, seeds_a, seeds_b) -> tuple[np.ndarray, np.ndarray]:
    order_a, order_b = np.argsort(seeds_a), np.argsort(seeds_b)
    return a[order_a], b[order_b]


def two_sample(a, b, *, metric: str, seeds_a=None, seeds_b=None, margin=None,
               confidence: float = 0.95) -> TwoSample:
    """Compare a with b by the module's rules; `margin` overrides the metric's default."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    paired = (seeds_a is not None and seeds_b is not None and len(seeds_a) == len(a)
              and len(seeds_b) == len(b) and is_paired(seeds_a, seeds_b))
    if paired:
        a, b = _align(a, b, np.asarray(seeds_a), np.asarray(seeds_b))
    abs_margin = resolve_margin(metric, b, margin)
    nan = math.nan
    if len(a) == 0 or len(b) == 0:
        return TwoSample("none", paired, len(a), len(b), nan, nan, nan, None, None, nan,
                         abs_margin)
    if metric in DETERMINISTIC or (metric.endswith("_bytes") and not metric_info(metric).censored
                                   and np.ptp(a) == 0 and np.ptp(b) == 0):
        diff = float(np.mean(a) - np.mean(b))
        return TwoSample("deterministic", paired, len(a), len(b), diff, diff, diff, None, None,
                         0.0, abs_margin)
    if len(a) < 2 or len(b) < 2:
        return TwoSample("none", paired, len(a), len(b), nan, nan, nan, None, None, nan,
                         abs_margin)
    if metric_info(metric).censored or not np.all(np.isfinite(np.concatenate([a, b]))):
        return _censored(a, b, paired, abs_margin)
    diff, se, df, spread = _t_parts(a, b, paired)
    half = sps.t.ppf(0.5 + confidence / 2, df) * se if se > 0 else 0.0
    if se == 0 or (paired and np.ptp(a - b) == 0) or (not paired and np.ptp(a) == np.ptp(b) == 0):
        test = "paired_permutation" if paired else "permutation"
        p = permutation_p(a, b, paired=paired)
    else:
        test = "paired_t" if paired else "welch"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(2 * sps.t.sf(abs(diff) / se, df))
    return TwoSample(test, paired, len(a), len(b), diff, float(diff - half), float(diff + half), p,
                     _tost(diff, se, df, abs_margin), spread, abs_margin)


def _censored(a: np.ndarray, b: np.ndarray, paired: bool, margin: float) -> TwoSample:
    """Permutation test on pooled ranks (+inf = never reached ranks last, ties share)."""
    ranks = sps.rankdata(np.concatenate([a, b]))
    ra, rb = ranks[: len(a)], ranks[len(a):]
    p = permutation_p(ra, rb, paired=paired) if np.ptp(ranks) > 0 else 1.0
    with np.errstate(invalid="ignore"):
        effect = float(np.median(a) - np.median(b))
    test = "paired_permutation" if paired else "permutation"
    return TwoSample(test, paired, len(a), len(b), effect, math.nan, math.nan, p, None,
                     math.nan, margin)


def seeds_needed(r: TwoSample, alpha: float, family_size: int) -> int | None:
    """Seeds per configuration a decision at the margin would need (None: not computable)."""
    if r.test in ("deterministic", "none"):
        return None
    level = alpha / max(1, family_size)  # the first Holm step, the strictest
    n = 2
    if r.test == "fisher":  # the most extreme table: all of one group fail, none of the other
        while sps.fisher_exact([[n, 0], [0, n]]).pvalue > level and n < 64:
            n += 1
        return n
    if r.test in ("paired_permutation", "permutation"):
        while min_p(n, n, r.paired) > level and n < 64:
            n += 1
    if math.isfinite(r.spread) and r.spread > 0 and r.margin > 0:
        z = sps.norm.ppf(1 - level / 2) + sps.norm.ppf(POWER)
        k = 1 if r.paired else 2
        n = max(n, math.ceil(k * (z * r.spread / r.margin) ** 2) + 1)  # +1: t, not z
    return n


def decide(r: TwoSample, *, want: int, p_adjusted: float | None, p_tost_adjusted: float | None,
           alpha: float, family_size: int) -> tuple[str, int | None]:
    """(verdict, seeds needed): supported | contradicted | equivalent | underpowered |
    inconclusive. `want` = +1 when the claim says a's metric is larger, -1 smaller."""
    if r.test == "none" or math.isnan(r.effect):
        return "inconclusive", None
    sign = int(np.sign(r.effect)) * want
    if r.test == "deterministic":
        if abs(r.effect) < r.margin:
            return "equivalent", None
        return ("supported" if sign > 0 else "contradicted"), None
    trivial = (math.isfinite(r.ci_low) and -r.margin < r.ci_low and r.ci_high < r.margin)
    # relevant: the estimate exceeds the margin (censored metrics have no interval; their
    # effect is a median difference, +-inf when one side never reached the target)
    relevant = not r.margin > 0 or abs(r.effect) >= r.margin
    if p_adjusted is not None and p_adjusted < alpha and sign != 0 and relevant:
        return ("supported" if sign > 0 else "contradicted"), None
    flat = r.spread == 0 and abs(r.effect) < r.margin
    if trivial or flat or (p_tost_adjusted is not None and p_tost_adjusted < alpha):
        return "equivalent", None
    need = seeds_needed(r, alpha, family_size)
    if need is not None and need > min(r.n_a, r.n_b):
        return "underpowered", need
    return "inconclusive", need
