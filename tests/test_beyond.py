"""Beyond-accuracy metrics (kdbench.evaluation.beyond) against hand-computed values and RecBole's own classes,
and the light / middle / heavy user groups (kdbench.report.groups)."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from kdbench.evaluation.beyond import beyond_accuracy, item_counts, tail_items, user_train_counts
from kdbench.report.groups import HEAVY, LIGHT, MIDDLE, user_groups

# A catalogue of n = 6 ids (0 is RecBole's padding item), training interactions per item id.
COUNTER = Counter({1: 10, 2: 5, 3: 1, 4: 1, 5: 3})
COUNTS = item_counts(COUNTER, 6)  # [0, 10, 5, 1, 1, 3]
# Three users' top-2 lists.
TOPK = np.array([[1, 2], [1, 3], [1, 5]])


def test_item_counts_and_tail_by_hand():
    assert COUNTS.tolist() == [0, 10, 5, 1, 1, 3]
    # items seen in training, by (count, id): 3, 4, 5, 2, 1; floor(0.8 * 5) = 4 of them are the tail
    assert np.flatnonzero(tail_items(COUNTS, 0.8)).tolist() == [2, 3, 4, 5]
    assert np.flatnonzero(tail_items(COUNTS, 0.5)).tolist() == [3, 4]  # floor(2.5) = 2: ties by id


def test_each_metric_matches_a_hand_computed_value():
    got = beyond_accuracy(TOPK, COUNTS, k=2, ratio=0.8)
    # recommended: {1, 2, 3, 5} of n = 6 ids
    assert got["itemcoverage@2"] == pytest.approx(4 / 6)
    # per user (10+5)/2, (10+1)/2, (10+3)/2 -> mean 39/6
    assert got["averagepopularity@2"] == pytest.approx(6.5)
    # tail {2, 3, 4, 5}: each user has one tail item of two
    assert got["tailpercentage@2"] == pytest.approx(0.5)
    # appearances sorted: 0, 0, 1, 1, 1, 3 (ids 0 and 4 never); sum (2j - 7) P_(j) for j = 1..6:
    # -5*0 - 3*0 - 1*1 + 1*1 + 3*1 + 5*3 = 18; / (6 lists-entries) / 6 items = 0.5
    assert got["giniindex@2"] == pytest.approx(0.5)
    # only the first k columns count
    assert beyond_accuracy(np.hstack([TOPK, TOPK]), COUNTS, k=2, ratio=0.8) == got


def test_equal_exposure_has_gini_zero_and_full_coverage():
    got = beyond_accuracy(np.array([[0, 1], [2, 3], [4, 5]]), COUNTS, k=2)
    assert got["giniindex@2"] == pytest.approx(0.0)
    assert got["itemcoverage@2"] == pytest.approx(1.0)


def test_the_formulas_agree_with_recboles_metric_classes():
    from recbole.evaluator.collector import DataStruct
    from recbole.evaluator.metrics import AveragePopularity, GiniIndex, ItemCoverage, TailPercentage

    rng = np.random.default_rng(0)
    n_items, n_users, k = 60, 40, 10
    counter = Counter({int(i): int(c) for i, c in enumerate(rng.poisson(3, n_items)) if i and c})
    topk = np.stack([rng.choice(np.arange(1, n_items), size=k, replace=False, p=None) for _ in range(n_users)])
    struct = DataStruct()
    struct.set("rec.items", torch.from_numpy(topk))
    struct.set("data.num_items", n_items)
    struct.set("data.count_items", counter)
    config = {"topk": [k], "metric_decimal_place": 12, "tail_ratio": 0.8}
    expected = {}
    for metric in (ItemCoverage, AveragePopularity, TailPercentage, GiniIndex):
        expected |= metric(config).calculate_metric(struct)
    got = beyond_accuracy(topk, item_counts(counter, n_items), k=k, ratio=0.8)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_user_train_counts_follow_the_given_order():
    assert user_train_counts(Counter({3: 7, 1: 2}), np.array([1, 3, 9])) == [2, 7, 0]


def test_every_user_is_in_exactly_one_group_at_the_stated_boundaries():
    counts = pd.Series([1, 2, 3, 4, 5, 6, 7, 8], index=[10, 11, 12, 13, 14, 15, 16, 17])
    groups = user_groups(counts)
    # q1 = 2 (numpy 'lower' 25th percentile), q3 = 7 ('higher' 75th)
    assert groups.to_dict() == {10: LIGHT, 11: LIGHT, 12: MIDDLE, 13: MIDDLE, 14: MIDDLE, 15: MIDDLE,
                                16: HEAVY, 17: HEAVY}


def test_ties_at_a_boundary_stay_in_the_outer_group():
    counts = pd.Series([1, 1, 1, 1, 2, 3, 9, 9], index=range(8))
    groups = user_groups(counts)
    assert (groups == LIGHT).sum() == 4  # all four users at q1 = 1: half the users
    assert set(groups[counts == 9]) == {HEAVY}
    assert len(groups) == len(counts) and set(groups) <= {LIGHT, MIDDLE, HEAVY}


def test_equal_counts_make_everyone_light_never_two_groups():
    groups = user_groups(pd.Series([4, 4, 4], index=[1, 2, 3]))
    assert list(groups) == [LIGHT, LIGHT, LIGHT]


def test_groups_partition_a_random_population():
    rng = np.random.default_rng(1)
    counts = pd.Series(rng.integers(5, 300, 500), index=rng.permutation(500))
    groups = user_groups(counts)
    q1, q3 = np.quantile(counts, 0.25, method="lower"), np.quantile(counts, 0.75, method="higher")
    assert groups.index.equals(counts.index)
    assert (counts[groups == LIGHT] <= q1).all() and (counts[groups != LIGHT] > q1).all()
    assert (counts[groups == HEAVY] >= q3).all() and (counts[groups == MIDDLE] < q3).all()
    assert 0.25 <= (groups == LIGHT).mean() < 0.3 and 0.25 <= (groups == HEAVY).mean() < 0.3


def test_reproduce_compares_beyond_only_where_the_stored_run_has_it():
    from kdbench.run.reproduce import differences

    test = {"ndcg@10": 0.25}
    beyond = {"giniindex@10": 0.9, "itemcoverage@10": 0.2, "tail_ratio": 0.8}
    rerun = {"status": "ok", "test": test, "beyond": beyond}
    assert differences({"status": "ok", "test": test}, rerun) == []  # made before the metrics existed
    assert differences({"status": "ok", "test": test, "beyond": beyond}, rerun) == []
    changed = differences({"status": "ok", "test": test, "beyond": beyond | {"giniindex@10": 0.8}}, rerun)
    assert changed == ["beyond.giniindex@10: stored 0.8, reproduced 0.9"]
    assert differences({"status": "ok", "test": test, "beyond": beyond}, {"status": "ok", "test": test}) == [
        "beyond.giniindex@10: not reproduced", "beyond.itemcoverage@10: not reproduced", "beyond.tail_ratio: not reproduced"]
