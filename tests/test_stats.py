"""Statistics of a strategy against scratch: hand-computed cases, scipy identities and simulations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdbench.stats import compare, holm, mean_variance, minimum_detectable_effect, paired_matrices

# d[s, u] for 2 seeds x 3 users. Row means 2, 5; column means 2, 3, 5.5; grand mean 3.5.
# MS_seed = 3 * (1.5^2 + 1.5^2) / 1 = 13.5; MS_user = 2 * (1.5^2 + 0.5^2 + 2^2) / 2 = 6.5;
# residuals +-0.5, +-0.5, +-1, so MS_resid = 3 / (1 * 2) = 1.5.
# Variance of the mean: (13.5 + 6.5 - 1.5) / 6 = 18.5 / 6; Satterthwaite df:
# 18.5^2 / (13.5^2 / 1 + 6.5^2 / 2 + 1.5^2 / 2) = 342.25 / 204.5.
HAND = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 8.0]])
HAND_VARIANCE, HAND_DF = 18.5 / 6, 342.25 / 204.5


def test_mean_variance_matches_the_hand_computed_two_way_anova():
    result = mean_variance(HAND)
    assert result.mean == pytest.approx(3.5)
    assert result.variance == pytest.approx(HAND_VARIANCE)
    assert result.df == pytest.approx(HAND_DF)
    assert result.var_seed == pytest.approx((13.5 - 1.5) / 3)
    assert result.var_user == pytest.approx((6.5 - 1.5) / 2)
    assert result.var_residual == pytest.approx(1.5)


def test_p_value_and_relative_interval_match_hand_computed():
    scratch = np.full_like(HAND, 10.0)  # constant scratch: the interval is the mean's, divided by 10
    result = compare(scratch + HAND, scratch)
    t = 3.5 / np.sqrt(HAND_VARIANCE)
    assert result.p_value == pytest.approx(2 * stats.t.sf(t, HAND_DF), rel=1e-9)
    assert result.rel_change == pytest.approx(0.35)
    half = stats.t.ppf(0.975, HAND_DF) * np.sqrt(HAND_VARIANCE) / 10
    assert (result.ci_low, result.ci_high) == (pytest.approx(0.35 - half), pytest.approx(0.35 + half))


def test_when_both_components_estimate_below_zero_only_the_residual_counts():
    # Row and column means all equal 0.5: MS_seed = MS_user = 0, MS_resid = 4 * 1^2 / 1 = 4;
    # variance 4 / 4 = 1 on 1 df, t = 0.5.
    result = compare(np.array([[1.5, -0.5], [-0.5, 1.5]]) + 1.0, np.ones((2, 2)))
    assert result.p_value == pytest.approx(2 * stats.t.sf(0.5, 1))
    assert result.var_seed == 0.0 and result.var_user == 0.0


def test_with_only_seed_variation_it_is_the_paired_t_test_over_seeds():
    d = np.array([0.03, 0.01, 0.05, -0.01, 0.02])
    scratch = np.random.default_rng(0).uniform(0, 1, (5, 40))
    result = compare(scratch + d[:, None], scratch)
    assert result.p_value == pytest.approx(stats.ttest_1samp(d, 0).pvalue, rel=1e-9)


def test_with_only_user_variation_it_is_the_t_test_over_users():
    a = np.random.default_rng(1).normal(0.01, 0.05, 40)
    scratch = np.random.default_rng(2).uniform(0, 1, (5, 40))
    result = compare(scratch + a[None, :], scratch)
    assert result.p_value == pytest.approx(stats.ttest_1samp(a, 0).pvalue, rel=1e-9)


def test_additive_seed_and_user_effects_give_welchs_test():
    # mean = mean(d) + mean(a), variance var(d)/S + var(a)/U, and the Welch-Satterthwaite df.
    d, a = np.array([0.02, 0.05, 0.03, 0.04]), np.random.default_rng(3).normal(0.0, 0.04, 30)
    result = compare(0.3 + d[:, None] + a[None, :], np.full((4, 30), 0.3))
    welch = stats.ttest_ind(d, -a, equal_var=False)
    assert result.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    low, high = welch.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low / 0.3), pytest.approx(high / 0.3))


def test_identical_matrices_give_p_one_and_a_zero_width_interval():
    scratch = np.random.default_rng(4).uniform(0, 1, (3, 10))
    result = compare(scratch.copy(), scratch)
    assert result.p_value == 1.0 and result.ci_low == 0.0 and result.ci_high == 0.0


def test_one_seed_cannot_be_tested():
    result = compare(np.ones((1, 10)), np.zeros((1, 10)))
    assert np.isnan(result.p_value) and np.isnan(result.ci_low)


def test_paired_matrices_align_by_seed_and_user_id_not_position():
    strategy = {0: pd.Series([0.3, 0.1, 0.2], index=[30, 10, 20]),
                1: pd.Series([0.4, 0.6, 0.5, 0.9], index=[10, 30, 20, 99]),  # user 99: this run only
                2: pd.Series([1.0], index=[10])}  # seed 2: scratch has none
    scratch = {1: pd.Series([0.5, 0.4, 0.6], index=[20, 10, 30]), 0: pd.Series([0.0, 0.1, 0.2], index=[10, 20, 30])}
    x, y = paired_matrices(strategy, scratch)
    assert list(x.index) == list(y.index) == [0, 1]
    assert list(x.columns) == list(y.columns) == [10, 20, 30]
    np.testing.assert_array_equal(x.to_numpy(), [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    np.testing.assert_array_equal(y.to_numpy(), [[0.0, 0.1, 0.2], [0.4, 0.5, 0.6]])


def test_holm_matches_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # 0.5 * 2 = 1; capped at 1


def test_minimum_detectable_effect_matches_hand_computed():
    # Seed variance only: df = S - 1 = 4, (t_.975,4 + t_.8,4) * 0.01 / sqrt(5) = 3.71741 * 0.0044721
    assert minimum_detectable_effect(1e-4, 0.0, 0.0, 5, 100) == pytest.approx(0.0166248, rel=1e-4)
    # User variance only: more seeds do not help.
    assert (minimum_detectable_effect(0.0, 1e-2, 0.0, 5, 100)
            == pytest.approx(minimum_detectable_effect(0.0, 1e-2, 0.0, 50, 100)))
    assert minimum_detectable_effect(1e-4, 1e-3, 1e-2, 20, 300) < minimum_detectable_effect(1e-4, 1e-3, 1e-2, 5, 300)


# -- simulation: per-user, per-seed data with known variance components ------------------------------
N_SIMULATIONS, N_SEEDS, N_USERS, BASE = 4000, 5, 200, 0.25
# (var_seed, var_user, var_residual) of the difference; the first rounds ml-100k BPR 64 -> 5's medians.
REGIMES = {"measured": (5e-5, 1e-3, 1.2e-2), "seed-dominated": (5e-4, 0.0, 1e-2), "user-dominated": (0.0, 5e-3, 1e-2)}


def simulate(rng, components, rel_effect):
    """Scratch and strategy matrices (simulations x seeds x users); strategy - scratch has mean
    rel_effect * BASE and the given variance components; scratch has its own seed and user effects."""
    shape = (N_SIMULATIONS, N_SEEDS, N_USERS)
    scratch = (BASE + rng.normal(0, 0.01, shape[:2] + (1,)) + rng.normal(0, 0.2, (1, 1, N_USERS))
               + rng.normal(0, 0.15, shape))
    var_seed, var_user, var_residual = components
    diff = (rel_effect * BASE + rng.normal(0, np.sqrt(var_seed), shape[:2] + (1,))
            + rng.normal(0, np.sqrt(var_user), (N_SIMULATIONS, 1, N_USERS)) + rng.normal(0, np.sqrt(var_residual), shape))
    return scratch + diff, scratch


@pytest.mark.parametrize("regime", REGIMES)
def test_null_simulation_keeps_the_nominal_false_positive_rate(regime):
    strategy, scratch = simulate(np.random.default_rng(14), REGIMES[regime], 0.0)
    result = compare(strategy, scratch)
    false_positives = np.mean(result.p_value < 0.05)
    assert 0.03 < false_positives < 0.07, false_positives
    covered = np.mean((result.ci_low <= 0) & (0 <= result.ci_high))
    assert 0.93 < covered < 0.97, covered


def test_a_planted_effect_is_detected_and_covered():
    components = REGIMES["measured"]
    effect = 0.08  # +8% of scratch's NDCG@10, above the regime's minimum detectable effect
    assert minimum_detectable_effect(*components, N_SEEDS, N_USERS) / BASE < effect
    strategy, scratch = simulate(np.random.default_rng(16), components, effect)
    result = compare(strategy, scratch)
    assert np.mean(result.p_value < 0.05) > 0.8
    covered = np.mean((result.ci_low <= effect) & (effect <= result.ci_high))
    assert 0.93 < covered < 0.97, covered
