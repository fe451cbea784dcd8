"""Statistics of a strategy against scratch: hand-computed cases, scipy identities and simulations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdbench.report.stats import (
    bootstrap_counts, compare, holm, mean_variance, minimum_detectable_effect, paired_matrices, rank_intervals,
    top_group, top_group_of,
)

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


def test_paired_matrices_of_runs_in_the_same_user_order_equal_those_aligned_by_id():
    users = [10, 20, 30, 40]
    strategy = {0: pd.Series([0.1, 0.2, np.nan, 0.4], index=users), 1: pd.Series([0.5, 0.6, 0.7, 0.8], index=users)}
    scratch = {0: pd.Series([0.0, 0.1, 0.2, np.nan], index=users), 1: pd.Series([0.3, 0.2, 0.1, 0.0], index=users)}
    x, y = paired_matrices(strategy, scratch)  # one order throughout: stacked, not aligned
    assert list(x.columns) == list(y.columns) == [10, 20]  # users 30 and 40 lack a value in some run
    np.testing.assert_array_equal(x.to_numpy(), [[0.1, 0.2], [0.5, 0.6]])
    np.testing.assert_array_equal(y.to_numpy(), [[0.0, 0.1], [0.3, 0.2]])
    reversed_order = {seed: values.iloc[::-1] for seed, values in strategy.items()}  # aligned by id
    for fast, aligned in zip((x, y), paired_matrices(reversed_order, scratch)):
        pd.testing.assert_frame_equal(fast, aligned, check_names=False)


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


# -- seed-bounded test (`seed_bound=True`): the seeds are the unit of replication -------------------
# x[s, u] for 2 seeds x 2 users: row means 1, 5; column means 3, 3; grand mean 3; residuals +-1.
# MS_seed = 2 * (2^2 + 2^2) / 1 = 16, MS_user = 0, MS_resid = 4 * 1^2 / 1 = 4. Unbounded variance
# (16 + 0 - 4) / 4 = 3 on Satterthwaite df 12^2 / (16^2 + 4^2) = 144 / 272; bounded max(12, 16) / 4 = 4
# on S - 1 = 1 df: the paired t-test over the seed means 1 and 5 (mean 3, standard error 2).
FLOORED = np.array([[0.0, 2.0], [6.0, 4.0]])


def test_seed_bound_takes_the_seed_level_variance_and_s_minus_one_df_by_hand():
    unbounded, bounded = mean_variance(FLOORED), mean_variance(FLOORED, seed_bound=True)
    assert unbounded.variance == pytest.approx(3.0) and unbounded.df == pytest.approx(144 / 272)
    assert bounded.variance == pytest.approx(4.0) and bounded.df == 1.0
    result = compare(FLOORED + 1.0, np.ones((2, 2)), seed_bound=True)
    assert result.p_value == pytest.approx(2 * stats.t.sf(1.5, 1))
    assert result.p_value == pytest.approx(stats.ttest_1samp([1.0, 5.0], 0).pvalue)


def test_seed_bound_keeps_the_full_variance_when_it_is_larger_by_hand():
    # HAND: (13.5 + 6.5 - 1.5) / 6 > 13.5 / 6, so only the df changes, to S - 1 = 1.
    result = compare(np.full_like(HAND, 10.0) + HAND, np.full_like(HAND, 10.0), seed_bound=True)
    assert result.df == 1.0
    assert result.p_value == pytest.approx(2 * stats.t.sf(3.5 / np.sqrt(HAND_VARIANCE), 1), rel=1e-9)
    half = stats.t.ppf(0.975, 1) * np.sqrt(HAND_VARIANCE) / 10
    assert (result.ci_low, result.ci_high) == (pytest.approx(0.35 - half), pytest.approx(0.35 + half))


def test_seed_bound_p_is_never_below_the_paired_t_test_over_seed_means():
    rng = np.random.default_rng(20)
    for n_seeds in (2, 3, 5):
        for _ in range(20):
            d = rng.normal(0.01, 0.002, (n_seeds, 1)) + rng.normal(0, rng.uniform(0, 0.05), (1, 50)) \
                + rng.normal(0, 0.05, (n_seeds, 50))
            bounded = compare(d + 0.3, np.full_like(d, 0.3), seed_bound=True).p_value
            assert bounded >= stats.ttest_1samp(d.mean(axis=1), 0).pvalue * (1 - 1e-9)


def test_the_report_tables_p_value_of_1e_21_becomes_a_seed_level_one():
    # The case: 3 seeds whose seed variance estimates at 0, so the unbounded test runs on
    # users alone. Here the seed means of the difference are exactly 0.0070, 0.0071, 0.0072 (the
    # residual noise is centred per seed and per user), far closer together than the residuals allow.
    rng = np.random.default_rng(21)
    noise = rng.normal(0, 0.08, (3, 943))
    noise -= noise.mean(axis=1, keepdims=True) + noise.mean(axis=0, keepdims=True) - noise.mean()
    users = rng.normal(0, 0.04, 943)
    d = np.array([[0.0070], [0.0071], [0.0072]]) + (users - users.mean())[None, :] + noise
    unbounded, bounded = compare(d + 0.28, np.full_like(d, 0.28)), compare(d + 0.28, np.full_like(d, 0.28), seed_bound=True)
    assert unbounded.var_seed == 0.0 and unbounded.df > 900 and unbounded.p_value < 1e-4
    assert bounded.df == 2.0 and bounded.p_value > 1e-3


# Null simulation of the seed-bounded test: no true difference; the difference has seed variance,
# user variance and residual variance in the proportions of the committed ml-100k tables (the
# seed part from none to the larger share of the mean's variance); scratch has its own effects.
# With seeds only the test is exact (the t-test over seed means): about 5%; the more the users
# carry, the more conservative (1-2% at 0.05 with a user share, since t_{S-1} is the worst case).
BOUND_SIMULATIONS, BOUND_USERS = 2000, 300
BOUND_REGIMES = {"seeds only": (5e-4, 0.0, 1e-2), "seeds dominate": (1e-4, 3e-3, 1e-2),
                 "balanced": (3e-5, 3e-3, 1e-2), "users dominate": (1e-5, 3e-3, 1e-2),
                 "no seed variance": (0.0, 3e-3, 1e-2)}


def simulate_table(rng, n_simulations, n_seeds, n_users, components, effect=0.0):
    """strategy, scratch: (simulations, seeds, users); strategy - scratch has mean `effect`."""
    shape = (n_simulations, n_seeds, n_users)
    scratch = (BASE + rng.normal(0, 0.01, shape[:2] + (1,)) + rng.normal(0, 0.2, (1, 1, n_users))
               + rng.normal(0, 0.15, shape))
    var_seed, var_user, var_residual = components
    diff = (effect + rng.normal(0, np.sqrt(var_seed), shape[:2] + (1,))
            + rng.normal(0, np.sqrt(var_user), (n_simulations, 1, n_users)) + rng.normal(0, np.sqrt(var_residual), shape))
    return scratch + diff, scratch


@pytest.mark.parametrize("n_seeds", [3, 5])
@pytest.mark.parametrize("regime", BOUND_REGIMES)
def test_null_simulation_seed_bound_rejects_at_most_alpha(regime, n_seeds):
    strategy, scratch = simulate_table(np.random.default_rng(30 + n_seeds), BOUND_SIMULATIONS, n_seeds,
                                       BOUND_USERS, BOUND_REGIMES[regime])
    bounded = compare(strategy, scratch, seed_bound=True)
    assert np.mean(bounded.p_value < 0.05) <= 0.055
    assert np.mean(bounded.p_value < 0.01) <= 0.012
    assert np.mean((bounded.ci_low <= 0) & (0 <= bounded.ci_high)) >= 0.945


def test_null_simulation_the_unbounded_test_over_rejects_with_three_seeds():
    # Why the bound: with 3 seeds and the seeds' share of the ml-100k tables (943 users) the
    # unbounded test rejects about 8% at 0.05 and 3.5% at 0.01; the bounded one stays under both.
    strategy, scratch = simulate_table(np.random.default_rng(40), 2000, 3, 943, (8e-5, 5e-3, 1e-2))
    unbounded, bounded = compare(strategy, scratch), compare(strategy, scratch, seed_bound=True)
    assert np.mean(unbounded.p_value < 0.05) > 0.065 and np.mean(unbounded.p_value < 0.01) > 0.025
    assert np.mean(bounded.p_value < 0.05) <= 0.05 and np.mean(bounded.p_value < 0.01) <= 0.01


def test_seed_bound_detects_an_effect_above_its_own_minimum_detectable_effect():
    components = BOUND_REGIMES["seeds dominate"]
    mde = minimum_detectable_effect(*components, 5, BOUND_USERS, seed_bound=True)
    assert mde > minimum_detectable_effect(*components, 5, BOUND_USERS)  # the bound costs power
    strategy, scratch = simulate_table(np.random.default_rng(41), 2000, 5, BOUND_USERS, components, effect=1.1 * mde)
    assert np.mean(compare(strategy, scratch, seed_bound=True).p_value < 0.05) > 0.8


def test_seed_bound_minimum_detectable_effect_by_hand():
    # Seed variance only: max(total, MS_seed) = MS_seed = U var_seed, df = S - 1 = 4, as unbounded.
    assert minimum_detectable_effect(1e-4, 0.0, 0.0, 5, 100, seed_bound=True) == pytest.approx(0.0166248, rel=1e-4)
    # User variance only: variance var_user / U = 1e-4 on S - 1 = 4 df: (2.776445 + 0.940965) * 0.01.
    assert minimum_detectable_effect(0.0, 1e-2, 0.0, 5, 100, seed_bound=True) == pytest.approx(0.0371741, rel=1e-4)


# -- tables: top group and rank intervals ---------------------------------------------------------------
def as_runs(values, names, seeds=None, users=None):
    """strategy -> {seed: per-user Series} from a strategies x seeds x users array."""
    seeds = list(range(values.shape[1])) if seeds is None else seeds
    users = list(range(100, 100 + values.shape[2])) if users is None else users
    return {name: {seed: pd.Series(values[m, i], index=users) for i, seed in enumerate(seeds)}
            for m, name in enumerate(names)}


def constructed_table(rng, offsets, n_seeds=5, n_users=200, seed_sd=0.002, user_sd=0.05):
    """Strategies sharing each seed's and each user's effect, offset by `offsets`, plus own noise."""
    shared = 0.3 + rng.normal(0, 0.01, (1, n_seeds, 1)) + rng.normal(0, 0.1, (1, 1, n_users))
    own = rng.normal(0, seed_sd, (len(offsets), n_seeds, 1)) + rng.normal(0, user_sd, (len(offsets), n_seeds, n_users))
    return shared + np.asarray(offsets, dtype=float)[:, None, None] + own


def test_top_group_keeps_the_near_tie_and_drops_the_clearly_worse():
    names = ["a", "b", "c", "d"]
    values = constructed_table(np.random.default_rng(50), [0.05, 0.0495, 0.0, -0.02])
    group = top_group(as_runs(values, names))
    assert group.leader == "a" and group.names == tuple(names)
    assert group.in_top.tolist() == [True, True, False, False]
    for m in (1, 2, 3):  # each p-value is the seed-bounded test of the leader against the strategy
        expected = compare(values[0], values[m], seed_bound=True)
        assert group.p_value[m] == pytest.approx(float(expected.p_value))
        assert group.mean_diff[m] == pytest.approx(float(expected.mean_diff))
    np.testing.assert_allclose(group.p_holm, holm(group.p_value))
    assert np.isnan(group.p_value[0]) and np.isnan(group.p_holm[0])


def test_top_group_takes_a_given_leader_and_never_drops_one_ahead_of_it():
    values = constructed_table(np.random.default_rng(51), [0.05, 0.0, -0.03])
    group = top_group(as_runs(values, ["x", "y", "z"]), leader="y")
    assert group.leader == "y"
    assert group.mean_diff[0] < 0 and group.p_holm[0] < 0.05 and group.in_top[0]  # better than the leader
    assert group.mean_diff[2] > 0 and not group.in_top[2]


def test_top_group_keeps_a_strategy_that_cannot_be_tested():
    values = constructed_table(np.random.default_rng(52), [0.05, -0.05])
    runs = as_runs(values, ["a", "b"])
    runs["b"] = {0: runs["b"][0]}  # one seed: no test against the leader
    group = top_group(runs)
    assert np.isnan(group.p_value[1]) and group.in_top.tolist() == [True, True]


def test_null_simulation_top_group_excludes_a_best_strategy_at_most_alpha():
    # Five equally good strategies on 5 seeds: each is a best one, so each exclusion is a false one.
    # Per strategy it happens at most alpha (about 1.3% here); that some strategy is excluded is
    # likelier (about 6%), as the docstring says. A unique best (+0.003) is almost never excluded.
    rng, names, trials = np.random.default_rng(53), tuple("abcde"), 250
    tied = [top_group_of(constructed_table(rng, [0.0] * 5, n_users=100, seed_sd=0.005), names).in_top
            for _ in range(trials)]
    assert 1 - np.mean(tied) <= 0.05
    unique = [top_group_of(constructed_table(rng, [0.003, 0, 0, 0, 0], n_users=100, seed_sd=0.005), names).in_top[0]
              for _ in range(trials)]
    assert 1 - np.mean(unique) <= 0.05


def test_rank_intervals_of_separated_and_tied_strategies():
    names = ["top", "tie1", "tie2", "low"]
    values = constructed_table(np.random.default_rng(54), [0.1, 0.05, 0.05, -0.1], user_sd=0.02)
    table = rank_intervals(as_runs(values, names), draws=500)
    assert list(table.index) == names and table.index.name == "strategy"
    means = values.mean(axis=(1, 2))
    np.testing.assert_allclose(table["mean"], means)
    assert table["rank"].tolist() == [1, *([2, 3] if means[1] > means[2] else [3, 2]), 4]
    assert table.loc["top", ["rank_low", "rank_high"]].tolist() == [1, 1]
    assert table.loc["low", ["rank_low", "rank_high"]].tolist() == [4, 4]
    for name in ("tie1", "tie2"):
        assert table.loc[name, ["rank_low", "rank_high"]].tolist() == [2, 3]


def test_rank_intervals_widen_with_seed_noise_the_users_cannot_show():
    # Same per-user spread; only the seed-to-seed noise differs: a one-level (users) bootstrap would
    # give the same intervals, the two-level one widens them.
    quiet = constructed_table(np.random.default_rng(55), [0.01, 0.0], seed_sd=0.0005, user_sd=0.01)
    noisy = constructed_table(np.random.default_rng(55), [0.01, 0.0], seed_sd=0.02, user_sd=0.01)
    width = lambda values: (lambda t: (t["rank_high"] - t["rank_low"]).sum())(  # noqa: E731
        rank_intervals(as_runs(values, ["a", "b"]), draws=1000))
    assert width(quiet) == 0 and width(noisy) >= 2


def test_the_bootstrap_draws_count_the_seeded_generators_indices_chunk_after_chunk():
    chunks = list(bootstrap_counts(7, 3, 50, 10, 4))
    rng = np.random.default_rng(7)
    assert [len(seeds) for seeds, _ in chunks] == [4, 4, 2]
    for seeds, users in chunks:  # seeds then users, chunk after chunk
        drawn_seeds, drawn_users = rng.integers(0, 3, size=(len(seeds), 3)), rng.integers(0, 50, size=(len(users), 50))
        for counts, drawn, n in ((seeds, drawn_seeds, 3), (users, drawn_users, 50)):
            assert counts.shape == (len(drawn), n) and counts.dtype == float
            for row, indices in zip(counts, drawn):
                assert np.array_equal(row, np.bincount(indices, minlength=n))
    again = list(bootstrap_counts(7, 3, 50, 10, 4))
    assert all(np.array_equal(a, b) for pair, other in zip(chunks, again) for a, b in zip(pair, other))


def test_the_bootstrap_counts_follow_the_multinomial():
    # each count is Binomial(U, 1/U): mean 1, variance 1 - 1/U; two users' counts covary by -1/U
    n = 20
    _, users = next(bootstrap_counts(3, 2, n, 40_000, 40_000))
    assert (users.sum(axis=1) == n).all()
    np.testing.assert_allclose(users.mean(axis=0), 1.0, atol=0.03)
    np.testing.assert_allclose(users.var(axis=0), 1 - 1 / n, atol=0.04)
    assert np.cov(users[:, 0], users[:, 1])[0, 1] == pytest.approx(-1 / n, abs=0.015)


@pytest.mark.parametrize("ties", ["min", "average"])
def test_draw_ranks_are_scipys_with_nan_last_and_ignored(ties):
    from kdbench.report.stats import _draw_ranks

    rng = np.random.default_rng(9)
    means = rng.integers(0, 4, size=(6, 300)).astype(float)  # many ties
    means[rng.random(means.shape) < 0.1] = np.nan
    expected = stats.rankdata(np.where(np.isfinite(means), -means, np.inf), method=ties, axis=0)
    np.testing.assert_array_equal(_draw_ranks(means, ties), np.where(np.isfinite(means), expected, np.nan))


def test_rank_intervals_are_deterministic_and_handle_a_missing_seed():
    values = constructed_table(np.random.default_rng(56), [0.02, 0.0, -0.02], n_seeds=4)
    runs = as_runs(values, ["a", "b", "c"])
    del runs["b"][3]  # b lacks seed 3: its mean is over seeds 0-2
    first, second = rank_intervals(runs, draws=300), rank_intervals(runs, draws=300)
    pd.testing.assert_frame_equal(first, second)
    assert first.loc["b", "mean"] == pytest.approx(values[1, :3].mean())
    assert first["rank"].tolist() == [1, 2, 3] and (first["rank_low"] <= first["rank"]).all()
    assert (first["rank"] <= first["rank_high"]).all()


def test_a_datasets_tables_share_the_drawn_counts():
    from kdbench.report.stats import _stored_counts

    _stored_counts.cache_clear()
    first = list(bootstrap_counts(11, 3, 400, 20, 8))
    second = list(bootstrap_counts(11, 3, 400, 20, 8))  # a second table of the same dataset and seeds
    assert _stored_counts.cache_info().hits == 1 and _stored_counts.cache_info().misses == 1
    assert all(np.array_equal(a, b) for pair, other in zip(first, second) for a, b in zip(pair, other))
    stored = _stored_counts(11, 3, 400, 20, 8)
    assert all(array.dtype == np.uint8 and not array.flags.writeable for pair in stored for array in pair)
