"""UnKD: popularity groups, pairs per group, the rank-pair sampler, the pools and the batch loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from _helpers_ranking import any_training_pair, assert_gradients_reach_student_only
from _helpers_sampling import merged_chisquare_pvalue
from conftest import make_context
from kdbench.errors import KdbenchError
from kdbench.strategies.unkd import UnKD, pairs_per_group, popularity_groups, unkd_loss


def history_with_counts(counts: list[int]) -> sp.csr_matrix:
    """A users x items history where item j (1-based) has counts[j - 1] interactions."""
    rows, cols = [], []
    for item, count in enumerate(counts, start=1):
        rows += list(range(1, count + 1))
        cols += [item] * count
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(max(counts) + 1, len(counts) + 1))


def reference_split(counts: list[int], n_groups: int) -> list[list[int]]:
    """chengang95/UnKD `splitGroup`, transcribed (items 1-based, most popular first, ties by id)."""
    order = sorted(range(1, len(counts) + 1), key=lambda i: -counts[i - 1])
    share = sum(counts) / n_groups
    groups, group, mass = [], [], 0
    for item in order:
        group.append(item)
        mass += counts[item - 1]
        if mass > share:
            if len(group) == 1:
                groups.append(group)
                group, mass = [], 0
                continue
            group.remove(item)
            groups.append(group)
            group, mass = [item], counts[item - 1]
    if group:
        if mass > share / 2:
            groups.append(group)
        elif groups:
            groups[-1].extend(group)
        else:
            groups.append(group)
    return groups


# -- groups and pair counts ---------------------------------------------------------------------
def test_groups_match_hand_computed():
    # counts 5, 4, 3, 2, 1, 1 (total 16), G = 2, share 8: [5] closes when 4 would pass 8; then
    # 4 + 3 = 7, + 2 = 9 > 8 closes [4, 3]; the rest (2, 1, 1: mass 4, not > 4) joins it.
    groups = popularity_groups(history_with_counts([5, 4, 3, 2, 1, 1]), 2)
    assert [g.tolist() for g in groups] == [[1], [2, 3, 4, 5, 6]]


@pytest.mark.parametrize("n_groups", [1, 2, 3, 4, 7])
def test_groups_match_the_reference_split(n_groups):
    rng = np.random.default_rng(n_groups)
    counts = rng.integers(1, 40, size=60).tolist()
    ours = [g.tolist() for g in popularity_groups(history_with_counts(counts), n_groups)]
    assert ours == reference_split(counts, n_groups)


def test_items_without_training_interactions_are_in_no_group():
    history = history_with_counts([3, 2, 1])
    history = sp.hstack([history, sp.csr_matrix((history.shape[0], 2))]).tocsr()  # items 4, 5 unseen
    assert sorted(np.concatenate(popularity_groups(history, 2)).tolist()) == [1, 2, 3]


def test_pairs_per_group_match_hand_computed():
    history = history_with_counts([10, 9, 8, 7, 1, 1, 1, 1])
    groups = [np.array([1, 2]), np.array([3, 4]), np.array([5, 6, 7, 8])]
    assert pairs_per_group(groups, history, 30, 0.0) == [10, 10, 10]
    assert pairs_per_group(groups[:2], history, 3, 0.0) == [2, 2]  # round(1.5) = 2 each: 4 >= 3, none added
    assert pairs_per_group(groups, history, 4, 0.0) == [2, 1, 1]  # round(4 / 3) = 1 each, the first short one +1
    # lamda = 1: mean popularity 9.5, 7.5, 1 -> ratio (10.5 - p) = 1, 3, 9.5 over 13.5 -> .07 -> .1, .22, .7
    shares = np.array([0.1, 0.22, 0.7]) / 1.02
    assert pairs_per_group(groups, history, 30, 1.0) == [round(s * 30) for s in shares]


def test_unkd_loss_matches_hand_computed():
    positive, negative = torch.tensor([[2.0, 0.0], [1.0, 1.0]]), torch.tensor([[1.0, 1.0], [0.0, 5.0]])
    pair = lambda d: -math.log(1 / (1 + math.exp(-d)))  # noqa: E731
    expected = [(pair(1.0) + pair(-1.0)) / 2, pair(1.0)]
    valid = torch.tensor([[True, True], [True, False]])
    assert unkd_loss(positive, negative, valid).tolist() == pytest.approx(expected, rel=1e-6)


# -- the sampler -------------------------------------------------------------------------------------
@pytest.fixture
def unkd(bpr_context):
    strategy = UnKD(bpr_context, top_n=200)
    strategy.prepare()
    strategy.on_epoch_start(1)
    return strategy


def test_rank_pairs_follow_the_conditioned_exponential_law_through_the_strategy(unkd):
    limit, rows = 40, 4_000
    better, worse = unkd.draw_rank_pairs(torch.full((rows,), limit), 8)
    assert (better < worse).all() and worse.max() < limit
    p = np.exp(-np.arange(1, limit + 1) / unkd.hparams["T"])
    p /= p.sum()
    # P(min = a) for two i.i.d. draws conditioned on differing: sum_{b > a} 2 p_a p_b / (1 - sum p^2)
    tail = p[::-1].cumsum()[::-1] - p
    expected = 2 * p * tail / (1 - (p**2).sum()) * better.numel()
    observed = np.bincount(better.reshape(-1).numpy(), minlength=limit)
    assert merged_chisquare_pvalue(observed, expected) > 0.001
    # and the pair's worse rank: P(max = b) = sum_{a < b} 2 p_a p_b / (1 - sum p^2)
    head = p.cumsum() - p
    observed = np.bincount(worse.reshape(-1).numpy(), minlength=limit)
    assert merged_chisquare_pvalue(observed, 2 * p * head / (1 - (p**2).sum()) * worse.numel()) > 0.001


def test_rows_with_fewer_than_two_items_get_no_valid_pairs(unkd):
    better, worse = unkd.draw_rank_pairs(torch.tensor([0, 1, 2, 5]), 6)
    assert (better[:2] == 0).all() and (worse[:2] == 0).all()
    assert (better[2] == 0).all() and (worse[2] == 1).all()


# -- pools, pairs and the batch loss --------------------------------------------------------------------
def test_pools_are_each_groups_teacher_top_unobserved_items(unkd, bpr_context):
    with torch.no_grad():
        scores = bpr_context.teacher.full_scores(torch.arange(bpr_context.n_users)).clone()
    coo = bpr_context.history.tocoo()
    scores[torch.from_numpy(coo.row).long(), torch.from_numpy(coo.col).long()] = -torch.inf
    for group, pool, limits in zip(unkd.groups, unkd.pools, unkd.limits):
        assert pool.shape[1] == min(200, len(group))
        assert np.isin(pool.numpy(), group).all()
        best = scores[:, torch.from_numpy(group)].topk(pool.shape[1], dim=1).values
        picked = scores.gather(1, pool)
        finite = torch.isfinite(best)
        assert torch.allclose(picked[finite], best[finite])
        assert torch.equal(limits, finite.sum(dim=1))


def test_pairs_are_teacher_ordered_unobserved_items_of_one_group(unkd, bpr_context):
    assert unkd.positive.shape[1] == sum(unkd.n_pairs) == 32  # round(30 / 4) = 8 per group
    assert unkd.valid.all()
    assert not any_training_pair(bpr_context.history, unkd.positive)
    assert not any_training_pair(bpr_context.history, unkd.negative)
    users = torch.arange(1, bpr_context.n_users).unsqueeze(1).expand(-1, unkd.positive.shape[1])
    with torch.no_grad():
        pos = bpr_context.teacher.score(users[:, 0], unkd.positive[1:])
        neg = bpr_context.teacher.score(users[:, 0], unkd.negative[1:])
    assert (pos >= neg).all()
    group_of = np.zeros(bpr_context.n_items, dtype=int)
    for g, items in enumerate(unkd.groups):
        group_of[items] = g
    assert (group_of[unkd.positive.numpy()] == group_of[unkd.negative.numpy()]).all()
    assert (group_of[unkd.positive[:, :8].numpy()] == 0).all()


def test_batch_loss_is_the_mean_over_rows(unkd, first_batch):
    users = first_batch[unkd.context.uid_field]
    pos = unkd.context.student.score(users, unkd.positive[users])
    neg = unkd.context.student.score(users, unkd.negative[users])
    rows = -torch.nn.functional.logsigmoid(pos - neg).mean(dim=1)
    assert unkd.loss(first_batch).item() == pytest.approx(rows.mean().item(), rel=1e-5)


def test_resampled_every_epoch_and_reproducible(ml100k):
    first, second = (UnKD(make_context(ml100k, seed=4), top_n=100) for _ in range(2))
    for strategy in (first, second):
        strategy.prepare()
        strategy.on_epoch_start(1)
    assert torch.equal(first.positive, second.positive) and torch.equal(first.negative, second.negative)
    before = first.positive.clone()
    first.on_epoch_start(2)
    assert not torch.equal(first.positive, before)


def test_gradients_reach_student_never_teacher(unkd, first_batch):
    assert unkd.family == "ranking" and unkd.weight == pytest.approx(1.0)
    assert_gradients_reach_student_only(unkd, first_batch)


def test_loss_before_sampling_is_an_error(bpr_context, first_batch):
    with pytest.raises(RuntimeError):
        UnKD(bpr_context).loss(first_batch)


@pytest.mark.parametrize("hparams", [{"G": 0}, {"n_distill": 0}, {"T": 0.0}, {"top_n": -1}, {"K": 3}])
def test_bad_hyperparameters_raise(bpr_context, hparams):
    with pytest.raises(KdbenchError):
        UnKD(bpr_context, **hparams)
