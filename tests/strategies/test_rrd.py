"""RRD and rrd-topk: the loss, the samplers, the batch reduction, the teacher's isolation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.stats import chisquare

from _helpers_ranking import any_training_pair, assert_gradients_reach_student_only, assert_is_teacher_top_k
from _helpers_sampling import (
    allowed_mask, allowed_positions, as_sets, assert_follows, by_group, exp_rank_pmf, fixed_context, lookup,
    over_epochs, successive_draws, teacher_ranks, teacher_top, user_groups,
)
from conftest import make_context
from kdbench.errors import KdbenchError
from kdbench.strategies import STRATEGIES
from kdbench.strategies._sampling import ItemExclusions, sample_allowed
from kdbench.strategies.knowledge import teacher_top_n
from kdbench.strategies.rrd import RRD, RRDTopK, rrd_loss, sample_interesting_ranks


@pytest.fixture
def rrd(bpr_context):
    strategy = RRD(bpr_context)
    strategy.prepare()
    strategy.on_epoch_start(1)
    return strategy


# -- the loss --------------------------------------------------------------------------------
def test_rrd_loss_matches_hand_computed():
    interesting = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    uninteresting = torch.tensor([[0.5], [-1.0]])
    e = math.exp
    user0 = -(2.0 - math.log(e(2.0) + e(1.0) + e(0.5))) - (1.0 - math.log(e(1.0) + e(0.5)))
    user1 = -(0.0 - math.log(e(0.0) + e(3.0) + e(-1.0))) - (3.0 - math.log(e(3.0) + e(-1.0)))
    assert rrd_loss(interesting, uninteresting).tolist() == pytest.approx([user0, user1], rel=1e-6)


def test_rrd_loss_without_uninteresting_items_is_plackett_luce():
    loss = rrd_loss(torch.tensor([[3.0, 1.0]]), torch.empty(1, 0))
    by_hand = -(3.0 - math.log(math.exp(3.0) + math.exp(1.0))) - (1.0 - 1.0)
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


def test_rrd_loss_equals_the_reference_expression():
    # DE-RRD Utils/loss.py: -(S1.sum() - (S1.flip(-1).exp().cumsum(1) + S2.exp().sum(1)).log().sum())
    gen = torch.Generator().manual_seed(3)
    s1, s2 = torch.randn(5, 7, generator=gen, dtype=torch.float64), torch.randn(5, 4, generator=gen, dtype=torch.float64)
    reference = -(s1.sum(1) - (s1.flip(-1).exp().cumsum(1) + s2.exp().sum(1, keepdim=True)).log().sum(1))
    assert rrd_loss(s1.float(), s2.float()).double().tolist() == pytest.approx(reference.tolist(), rel=1e-5)


def test_rrd_loss_shifts_each_row_by_its_own_maximum():
    # one row near 0, one near 1000: a shift shared by the batch would underflow the first row
    interesting = torch.tensor([[0.0, -1.0], [1000.0, 999.0]])
    uninteresting = torch.tensor([[-2.0], [998.0]])
    loss = rrd_loss(interesting, uninteresting)
    assert loss.dtype == torch.float32  # the scores' dtype, though summed in float64
    rows = [rrd_loss(interesting[[row]], uninteresting[[row]]).item() for row in (0, 1)]
    assert loss.tolist() == pytest.approx(rows, rel=1e-6)
    assert rows[0] == pytest.approx(rows[1], rel=1e-4)  # the same scores up to a constant


def test_rrd_loss_is_finite_for_large_scores():
    interesting = torch.tensor([[900.0, 400.0, -300.0]], requires_grad=True)
    uninteresting = torch.tensor([[850.0, -900.0]])
    loss = rrd_loss(interesting, uninteresting)
    expected = (torch.logaddexp(torch.logcumsumexp(interesting.double().flip(1), 1).flip(1),
                                torch.logsumexp(uninteresting.double(), 1, keepdim=True)) - interesting.double()).sum()
    assert torch.isfinite(loss).all() and loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.sum().backward()
    assert torch.isfinite(interesting.grad).all()


# -- the samplers ----------------------------------------------------------------------------
def test_interesting_first_draw_follows_exp_rank_distribution():
    pool, temperature, draws = 60, 10.0, 20_000
    ranks = sample_interesting_ranks(draws, pool, 1, temperature, torch.Generator().manual_seed(0))
    observed = np.bincount(ranks[:, 0].numpy(), minlength=pool)
    weights = np.exp(-np.arange(1, pool + 1) / temperature)
    expected = draws * weights / weights.sum()
    assert expected.min() >= 5
    assert chisquare(observed, expected).pvalue > 0.001
    assert chisquare(observed).pvalue < 1e-12  # the test can tell this from uniform


def test_interesting_pairs_follow_sampling_without_replacement():
    # K=2 of 3 ranks: P({a, b}) = p_a p_b / (1 - p_a) + p_b p_a / (1 - p_b) (successive draws)
    temperature, draws = 1.0, 30_000
    ranks = sample_interesting_ranks(draws, 3, 2, temperature, torch.Generator().manual_seed(1))
    p = np.exp(-np.arange(1, 4) / temperature)
    p /= p.sum()
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = np.array([p[a] * p[b] / (1 - p[a]) + p[b] * p[a] / (1 - p[b]) for a, b in pairs]) * draws
    observed = np.array([((ranks[:, 0] == a) & (ranks[:, 1] == b)).sum().item() for a, b in pairs])
    assert observed.sum() == draws  # every row is one of the three sorted pairs
    assert chisquare(observed, expected).pvalue > 0.001


def test_interesting_ranks_are_distinct_and_sorted():
    ranks = sample_interesting_ranks(2_000, 500, 40, 10.0, torch.Generator().manual_seed(2))
    assert ranks.shape == (2_000, 40)
    assert (ranks[:, 1:] > ranks[:, :-1]).all() and ranks.min() >= 0 and ranks.max() < 500


def test_small_temperature_does_not_underflow():
    ranks = sample_interesting_ranks(10, 500, 40, 0.01, torch.Generator().manual_seed(0))
    assert (ranks == torch.arange(40)).all()  # all the mass on the top ranks, in order


def _toy_exclusions():
    # 2 users, items 1..11 (0 is padding). User 0 trained on {2, 5}; extra list {7} -> 8 allowed.
    history = sp.csr_matrix((np.ones(3), ([0, 0, 1], [2, 5, 3])), shape=(2, 12))
    return ItemExclusions(history, extra=torch.tensor([[7], [4]]))


def test_interesting_ranks_drawn_in_chunks_are_valid_in_every_row():
    ranks = sample_interesting_ranks(25, 20, 5, 2.0, torch.Generator().manual_seed(0), max_cells=100)  # 5 rows a chunk
    assert ranks.shape == (25, 5)
    assert (ranks[:, 1:] > ranks[:, :-1]).all() and ranks.min() >= 0 and ranks.max() < 20
    assert len({tuple(row) for row in ranks.tolist()}) > 5  # chunks are drawn independently


@pytest.mark.parametrize("distinct", [True, False])
def test_allowed_items_are_drawn_uniformly(distinct):
    excluded = _toy_exclusions()
    draws = sample_allowed(excluded, torch.zeros(6_000, dtype=torch.long), 3, torch.Generator().manual_seed(4),
                           distinct=distinct)
    allowed = [1, 3, 4, 6, 8, 9, 10, 11]
    assert set(draws.unique().tolist()) == set(allowed)
    if distinct:
        ordered = draws.sort(dim=1).values
        assert (ordered[:, 1:] != ordered[:, :-1]).all()
    observed = np.bincount(draws.reshape(-1).numpy(), minlength=12)[allowed]
    assert chisquare(observed).pvalue > 0.001


def test_sampled_sets_respect_exclusions(rrd, ml100k):
    pool = teacher_top_n(rrd.context.teacher, ml100k.history, 500)
    interesting, uninteresting = rrd.interesting, rrd.uninteresting
    assert interesting.shape == (ml100k.n_users, 40) and uninteresting.shape == (ml100k.n_users, 40)
    # interesting: distinct items of the teacher's top 500, in teacher order
    position = (pool.unsqueeze(1) == interesting.unsqueeze(2)).float().argmax(dim=2)
    assert (pool.gather(1, position) == interesting).all()
    assert (position[:, 1:] > position[:, :-1]).all()
    # uninteresting: distinct, never padding, a training item or a teacher top-500 item
    ordered = uninteresting.sort(dim=1).values
    assert (ordered[:, 1:] != ordered[:, :-1]).all() and (uninteresting > 0).all()
    assert not (pool.unsqueeze(1) == uninteresting.unsqueeze(2)).any()
    assert not any_training_pair(ml100k.history, uninteresting)
    assert not any_training_pair(ml100k.history, interesting)


def test_resampled_every_epoch_and_reproducible(ml100k):
    first, second = RRD(make_context(ml100k, seed=3)), RRD(make_context(ml100k, seed=3))
    for strategy in (first, second):
        strategy.prepare()
        strategy.on_epoch_start(1)
    assert torch.equal(first.interesting, second.interesting)
    assert torch.equal(first.uninteresting, second.uninteresting)
    before = first.interesting.clone(), first.uninteresting.clone()
    first.on_epoch_start(2)
    assert not torch.equal(first.interesting, before[0]) and not torch.equal(first.uninteresting, before[1])


def test_rrd_topk_takes_exactly_the_teacher_top_k(bpr_context, ml100k):
    strategy = RRDTopK(bpr_context, K=25)
    strategy.prepare()
    strategy.on_epoch_start(1)
    assert_is_teacher_top_k(bpr_context, strategy.interesting)
    strategy.on_epoch_start(2)  # not resampled: the same list every epoch
    assert torch.equal(strategy.interesting, strategy._pool[:, :25])
    assert not any_training_pair(ml100k.history, strategy.uninteresting)


# -- the sampling, through the strategy ---------------------------------------------------------
EPOCHS = range(1, 301)


def test_strategy_draws_interesting_ranks_with_its_t_and_top_n():
    """prepare + 300 epochs on a fixed teacher: each user's interesting items are K = 3 ranks of the
    teacher's top_n = 8 unobserved items drawn without replacement with p(r) ~ exp(-r / T), T = 2,
    and are kept in teacher order."""
    context = fixed_context()
    strategy = RRD(context, K=3, L=4, T=2.0, top_n=8)
    strategy.prepare()
    ranks = lookup(teacher_ranks(context), over_epochs(strategy, EPOCHS, lambda s: s.interesting))
    assert ranks.shape[2] == 3
    assert (np.diff(ranks, axis=2) > 0).all()  # distinct, in teacher order
    pmfs = {0: as_sets(successive_draws(exp_rank_pmf(8, 2.0), 3))}
    assert_follows(by_group(ranks, user_groups(context, np.zeros(context.n_users, dtype=int))), pmfs)


def test_rrd_topk_interesting_items_are_the_teacher_top_k_every_epoch():
    context = fixed_context()
    strategy = RRDTopK(context, K=3, L=4, T=2.0, top_n=8)
    strategy.prepare()
    ranks = lookup(teacher_ranks(context), over_epochs(strategy, range(1, 4), lambda s: s.interesting))
    assert (ranks[:, 1:] == np.arange(3)).all()


@pytest.mark.parametrize("cls", [RRD, RRDTopK])
def test_strategy_draws_uninteresting_items_uniformly_outside_training_and_top_n(cls):
    """Per user and epoch, L = 4 distinct items drawn uniformly from the items that are neither
    training items nor in the teacher's top_n = 8 (the first of them is uniform over those)."""
    context = fixed_context()
    strategy = cls(context, K=3, L=4, T=2.0, top_n=8)
    strategy.prepare()
    drawn = over_epochs(strategy, EPOCHS, lambda s: s.uninteresting)
    assert drawn.shape[2] == 4
    ordered = drawn.sort(dim=2).values
    assert (ordered[..., 1:] != ordered[..., :-1]).all()
    allowed = allowed_mask(context, also_excluded=teacher_top(context, 8))
    positions = lookup(allowed_positions(allowed), drawn[:, :, :1])
    counts = allowed.sum(axis=1)
    assert set(counts[1:].tolist()) == {28, 24, 7}  # 40 items less 4, 8 or 25 training items less 8
    pmfs = {count: {position: 1 / count for position in range(count)} for count in set(counts.tolist())}
    assert_follows(by_group(positions, user_groups(context, counts)), pmfs)
    assert (lookup(allowed_positions(allowed), drawn)[:, 1:] >= 0).all()  # every column allowed


# -- the batch loss ------------------------------------------------------------------------
def test_batch_loss_sums_unique_users_over_batch_size(rrd, first_batch):
    users = first_batch[rrd.context.uid_field]
    expected = 0.0
    for user in users.unique().tolist():
        scores = rrd.context.student.score(torch.tensor([user]), rrd._items[[user]])
        expected += rrd_loss(scores[:, :40], scores[:, 40:]).item()
    assert rrd.loss(first_batch).item() == pytest.approx(expected / len(users), rel=1e-4)


@pytest.mark.parametrize("name", ["rrd", "rrd-topk"])
def test_integration_gradients_reach_student_never_teacher(name, bpr_context, first_batch):
    strategy = STRATEGIES.get(name)(bpr_context)
    assert strategy.family == "ranking" and strategy.weight == pytest.approx(0.001)
    strategy.prepare()
    strategy.on_epoch_start(1)
    assert_gradients_reach_student_only(strategy, first_batch)


def test_loss_before_sampling_is_an_error(bpr_context, first_batch):
    with pytest.raises(RuntimeError):
        RRD(bpr_context).loss(first_batch)


# -- hyperparameters -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hparams",
    [{"tau": 1.0}, {"K": -1}, {"L": -5}, {"T": -2.0}, {"weight": -0.1}, {"K": 0}, {"T": 0.0},
     {"K": 50, "top_n": 40}, {"K": "many"}],
)
def test_bad_hyperparameters_raise(bpr_context, hparams):
    with pytest.raises(KdbenchError):
        RRD(bpr_context, **hparams)


def test_top_n_below_k_is_refused_with_the_reason(bpr_context):
    with pytest.raises(KdbenchError, match="top_n \\(40\\) must be >= K \\(50\\): the interesting items come "
                                           "from the teacher's top_n$"):
        RRD(bpr_context, K=50, top_n=40)


def test_top_n_equal_to_k_is_allowed():
    strategy = RRDTopK(fixed_context(), K=8, L=4, top_n=8)
    strategy.prepare()
    strategy.on_epoch_start(1)
    assert strategy.interesting.shape == (31, 8)


def test_the_users_outside_items_must_hold_exactly_top_n_plus_l():
    context = fixed_context()  # user 3 is the first with 25 training items: 15 outside
    RRD(context, K=3, top_n=11, L=4).prepare()
    with pytest.raises(KdbenchError, match="top_n \\+ L = 16 .* user 3 has only 15: lower top_n or L"):
        RRD(context, K=3, top_n=12, L=4).prepare()


def test_epoch_start_before_prepare_and_loss_before_epoch_start_are_errors():
    strategy = RRD(fixed_context())
    with pytest.raises(RuntimeError, match="call prepare\\(\\) before training"):
        strategy.on_epoch_start(1)
    with pytest.raises(RuntimeError, match="before loss"):
        strategy.loss({strategy.context.uid_field: torch.tensor([1])})


def test_too_few_items_outside_training_raises(bpr_context):
    strategy = RRD(bpr_context, top_n=1500)  # ml-100k users have at most 1682 - 591 unseen items
    with pytest.raises(KdbenchError, match="lower top_n or L"):
        strategy.prepare()
