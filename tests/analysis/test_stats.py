"""nnopt.analysis.stats against hand computations and scipy called directly."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from nnopt.analysis import stats


def test_describe_matches_hand_computation_and_scipy_t_interval():
    values = [0.80, 0.82, 0.85, 0.79, 0.84]
    d = stats.describe(values)
    mean = sum(values) / 5
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    assert d.n == 5 and d.ci_method == "t"
    assert d.mean == pytest.approx(mean) and d.std == pytest.approx(std)
    low, high = sps.t.interval(0.95, 4, loc=mean, scale=std / math.sqrt(5))
    assert (d.ci_low, d.ci_high) == pytest.approx((low, high))
    assert d.median == pytest.approx(0.82)
    assert (d.q25, d.q75) == pytest.approx((0.80, 0.84))


def test_describe_uses_bootstrap_only_for_skewed_samples_with_n_at_least_10():
    skewed = np.array([1.0] * 9 + [2, 3, 10.0])
    assert stats.describe(skewed).ci_method == "bootstrap"
    assert stats.describe(skewed[-6:]).ci_method == "t"  # small n: t even if skewed
    d = stats.describe(skewed)
    assert d.ci_low < d.mean < d.ci_high


def test_describe_censored_values_give_median_but_no_mean():
    d = stats.describe([3.0, 5.0, np.inf])
    assert math.isnan(d.mean) and d.ci_method == "none"
    assert d.median == 5.0 and d.n == 3


def test_welch_comparison_equals_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.2, 5), rng.normal(0.7, 0.4, 6)
    c = stats.compare(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert c.test == "welch"
    assert c.p == pytest.approx(ref.pvalue)
    assert (c.diff_ci_low, c.diff_ci_high) == pytest.approx(tuple(ref.confidence_interval()))
    assert c.diff == pytest.approx(a.mean() - b.mean())
    sp = math.sqrt((4 * a.var(ddof=1) + 5 * b.var(ddof=1)) / 9)
    assert c.effect_size == pytest.approx((a.mean() - b.mean()) / sp * (1 - 3 / 35))


def _exact_rank_p(a, b) -> float:
    """Two-sided exact Mann-Whitney p with ties, by enumerating all C(n_a+n_b, n_a) splits."""
    ranks = sps.rankdata(np.concatenate([a, b]))
    observed = abs(ranks[: len(a)].mean() - ranks[len(a):].mean())
    total, extreme = 0, 0
    for idx in itertools.combinations(range(len(ranks)), len(a)):
        mask = np.zeros(len(ranks), bool)
        mask[list(idx)] = True
        total += 1
        extreme += abs(ranks[mask].mean() - ranks[~mask].mean()) >= observed - 1e-12
    return extreme / total


def test_censored_comparison_uses_exact_mann_whitney_with_ties_and_inf():
    a = np.array([100, 120, 110, np.inf, 130.0])
    b = np.array([300, np.inf, np.inf, np.inf, 280.0])
    c = stats.compare(a, b, censored=True)
    ref = sps.mannwhitneyu(a, b, alternative="two-sided")
    assert c.test == "mannwhitney" and c.p == pytest.approx(_exact_rank_p(a, b))
    # the normal approximation scipy falls back to with ties differs (here: 0.067 vs 0.063)
    assert c.p != pytest.approx(ref.pvalue)
    assert c.diff == -np.inf or math.isnan(c.diff)  # median(b) is inf
    # a is faster in 4 of 5 runs: Cliff's delta is strongly negative (a smaller).
    assert c.effect_size == pytest.approx(2 * ref.statistic / 25 - 1) and c.effect_size < -0.5


def test_constant_groups_of_a_stochastic_metric_get_p_at_least_the_exact_floor():
    c = stats.compare([4.0] * 5, [3.0] * 5)
    assert c.test == "permutation" and c.p == pytest.approx(2 / 252)
    assert c.p >= stats.min_p(5, 5) > 0
    assert stats.compare([4.0] * 3, [4.0] * 3).p == 1.0


def test_deterministic_metric_is_compared_not_tested():
    c = stats.compare([4.0] * 3, [2.0] * 3, deterministic=True)
    assert c.test == "deterministic" and math.isnan(c.p) and c.diff == 2.0


def test_permutation_p_is_exact_for_small_n_and_seeded_for_large_n():
    a, b = np.array([1.0, 2, 3]), np.array([4.0, 5, 6])
    assert stats.permutation_p(a, b) == pytest.approx(2 / 20)  # C(6, 3) = 20 splits
    assert stats.permutation_p(a - b, np.zeros(3), paired=True) == pytest.approx(2 / 8)
    rng = np.random.default_rng(1)
    big_a, big_b = rng.normal(0, 1, 12), rng.normal(1, 1, 12)  # C(24, 12) > MAX_EXACT
    p1, p2 = stats.permutation_p(big_a, big_b), stats.permutation_p(big_a, big_b)
    assert p1 == p2 >= 1 / (stats.N_RESAMPLES + 1)
    assert p1 == pytest.approx(sps.ttest_ind(big_a, big_b).pvalue, abs=0.02)


def test_holm_against_hand_computation():
    p = [0.01, 0.04, 0.03, np.nan, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    expected = [0.03, 0.06, 0.06, np.nan, 0.02]
    np.testing.assert_allclose(stats.holm(p), expected)


def test_rank_with_ties_shares_ranks_when_cis_overlap():
    means, lows, highs = [0.9, 0.88, 0.5], [0.87, 0.85, 0.45], [0.93, 0.91, 0.55]
    assert list(stats.rank_with_ties(means, lows, highs, higher_is_better=True)) == [1, 1, 3]
    assert list(stats.rank_with_ties(means, lows, highs, higher_is_better=False)) == [2, 2, 1]


def test_compare_many_fast_path_equals_one_by_one_reference():
    rng = np.random.default_rng(3)
    base = rng.normal(0.8, 0.05, 5)
    samples = [rng.normal(0.8 + 0.02 * k, 0.03 + 0.01 * k, 3 + k % 4) for k in range(12)]
    samples += [[0.5], [0.8] * 4, rng.lognormal(0, 1.5, 12), np.array([1.0, np.nan, 1.2, 0.9])]
    fast = stats.compare_many(samples, base)
    slow = [stats.compare(s, base) for s in samples]
    assert [f.test for f in fast] == [s.test for s in slow]
    assert "welch" in {f.test for f in fast} and "none" in {f.test for f in fast}
    for f, s in zip(fast, slow):
        np.testing.assert_allclose(
            [f.diff, f.diff_ci_low, f.diff_ci_high, f.p, f.effect_size],
            [s.diff, s.diff_ci_low, s.diff_ci_high, s.p, s.effect_size], rtol=1e-9)


def test_compare_many_mann_whitney_batches_equal_one_by_one_reference():
    rng = np.random.default_rng(5)
    base = np.array([300, 320, np.inf, 310, 290.0])
    samples = [np.where(rng.random(5) < 0.3, np.inf, rng.normal(300 + 20 * k, 15, 5))
               for k in range(10)]
    samples += [rng.normal(250, 10, 4), np.array([np.inf] * 5), rng.normal(300, 10, 12)]
    fast = stats.compare_many(samples, base, censored=True)
    slow = [stats.compare(s, base, censored=True) for s in samples]
    assert {f.test for f in fast} == {"mannwhitney"}
    for f, s in zip(fast, slow):
        np.testing.assert_allclose([f.p, f.effect_size], [s.p, s.effect_size], rtol=1e-12)
        assert f.diff == s.diff or (np.isnan(f.diff) and np.isnan(s.diff))


def test_vectorized_exact_permutation_equals_scipy_permutation_test():
    rng = np.random.default_rng(7)
    for _ in range(60):
        n_a, n_b = rng.integers(2, 7, 2)
        a = rng.integers(0, 4, n_a).astype(float)  # many ties, as discretized metrics have
        b = rng.integers(0, 4, n_b).astype(float) + rng.integers(0, 2)
        assert stats.permutation_p(a, b) == pytest.approx(stats.permutation_p_reference(a, b))
        if n_a == n_b:
            assert stats.permutation_p(a, b, paired=True) == pytest.approx(
                stats.permutation_p_reference(a, b, paired=True))


def test_cliffs_delta_equals_the_mann_whitney_u_formula():
    a, b = np.array([1.0, 2, 2, np.inf]), np.array([2.0, 3, np.inf])
    u = sps.mannwhitneyu(a, b, alternative="two-sided").statistic
    assert stats.cliffs_delta(a, b) == pytest.approx(2 * u / 12 - 1)
