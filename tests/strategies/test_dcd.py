"""DCD: rank-discrepancy weights and sampling, the student's ranks, both sides' lists, the batch loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from _helpers_sampling import merged_chisquare_pvalue
from _helpers_ranking import any_training_pair, assert_gradients_reach_student_only, assert_is_teacher_top_k
from conftest import make_context
from kdbench.errors import KdbenchError
from kdbench.strategies.dcd import DCD, discrepancy_log_weights
from kdbench.strategies.knowledge import scoring_mode, top_users, unseen_ranks, unseen_user_ranks


@pytest.fixture
def dcd(bpr_context):
    # both sides, the under-estimated list in teacher order, ranks among unobserved items: the options
    strategy = DCD(bpr_context, K=20, top_n=100, item_weight=1.0, teacher_order=True, rank_unobserved=True)
    strategy.prepare()
    strategy.on_epoch_start(1)
    return strategy


def masked_scores(context, adapter, users_too: bool = False) -> torch.Tensor:
    """Every user's scores for every item, padding and training pairs at -inf (and user 0 too)."""
    with torch.no_grad():
        scores = adapter.full_scores(torch.arange(context.n_users)).clone()
    scores[:, 0] = -torch.inf
    coo = context.history.tocoo()
    scores[torch.from_numpy(coo.row).long(), torch.from_numpy(coo.col).long()] = -torch.inf
    if users_too:
        scores[0] = -torch.inf
    return scores


# -- the sampling weights ------------------------------------------------------------------------
def test_discrepancy_weights_match_hand_computed():
    student_ranks = torch.tensor([[3, 0, 2, 9]])  # pool positions 0..3 are the teacher ranks
    limits = torch.tensor([3])  # position 3 is not an unobserved item
    under = discrepancy_log_weights(student_ranks, limits, 2.0, under=True).exp()[0]
    over = discrepancy_log_weights(student_ranks, limits, 2.0, under=False).exp()[0]
    # under: r_S - r_T = 3, -1, 0 -> tanh(1.5), floor, floor; over: -3, 1, 0 -> floor, tanh(0.5), floor
    assert under[:3].tolist() == pytest.approx([math.tanh(1.5), 1e-5, 1e-5], rel=1e-5)
    assert over[:3].tolist() == pytest.approx([1e-5, math.tanh(0.5), 1e-5], rel=1e-5)
    assert under[3] == 0 and over[3] == 0


@pytest.mark.parametrize("under", [True, False])
def test_first_draw_follows_rank_discrepancy_through_the_strategy(bpr_context, under):
    # draw order kept (teacher_order off): the first under- (over-) estimated draw is p ~ weight
    strategy = DCD(bpr_context, K=3, T=4.0, teacher_order=False, item_weight=0.0)
    pool_size, rows = 30, 12_000
    student_ranks = torch.tensor([0, 35, 2, 1, 8, 3, 40, 7, 6, 2, 30, 11, 0, 13, 20, 9, 16, 17, 5, 25,
                                  19, 21, 22, 60, 24, 18, 26, 27, 10, 29]).expand(rows, -1)
    pool = torch.arange(100, 100 + pool_size).expand(rows, -1)
    limits = torch.full((rows,), pool_size)
    lists = strategy.sample_lists(pool, student_ranks, limits)
    first = lists[:, 0 if under else 3] - 100
    gap = (student_ranks[0] - torch.arange(pool_size)) * (1 if under else -1)
    weights = np.maximum(np.tanh(np.maximum(gap.numpy() / 4.0, 0)), 1e-5)
    expected = rows * weights / weights.sum()
    observed = np.bincount(first.numpy(), minlength=pool_size)
    assert merged_chisquare_pvalue(observed, expected) > 0.001
    assert chisquare(observed[expected > 5]).pvalue < 1e-6  # the test tells the weights from uniform


def test_sampled_lists_are_distinct_pool_items_in_teacher_order(dcd):
    k, pool = 20, dcd.item_pool
    lists = dcd.user_lists.cpu()
    under, over = lists[:, :k], lists[:, k:]
    for part in (under, over):
        ordered = part.sort(dim=1).values
        assert (ordered[:, 1:] != ordered[:, :-1]).all()
    position = (pool.unsqueeze(1) == lists.unsqueeze(2)).float().argmax(dim=2)
    assert (pool.gather(1, position) == lists).all()  # every item is from the user's pool
    assert (position[:, :k][:, 1:] > position[:, :k][:, :-1]).all()  # under-estimated in teacher order
    assert (position < dcd.item_limits.view(-1, 1)).all()
    assert not any_training_pair(dcd.context.history, lists)


# -- the student's ranks and the teacher's pools --------------------------------------------------
def test_pool_is_the_teacher_top_unobserved_items(dcd, bpr_context):
    assert_is_teacher_top_k(bpr_context, dcd.item_pool)


@pytest.mark.parametrize("max_cells", [2**24, 600_000])  # one chunk; several chunks
def test_student_ranks_count_higher_unobserved_items(bpr_context, max_cells):
    strategy = DCD(bpr_context, K=5, top_n=50, item_weight=1.0)
    strategy.prepare()
    with scoring_mode(bpr_context.student):
        ranks = unseen_ranks(bpr_context.student, bpr_context.history, strategy.item_pool, max_cells=max_cells)
        user_ranks = unseen_user_ranks(bpr_context.student, bpr_context.history, strategy.user_pool,
                                       max_cells=max_cells)
    scores = masked_scores(bpr_context, bpr_context.student, users_too=True)
    for user in (1, 7, 500):
        pool_scores = scores[user, strategy.item_pool[user]]
        brute = (scores[user].unsqueeze(0) > pool_scores.unsqueeze(1)).sum(dim=1)
        assert torch.equal(ranks[user], brute)
    for item in (1, 50, 1000):
        limit = strategy.user_limits[item]
        pool_scores = scores[strategy.user_pool[item], item]
        brute = (scores[:, item].unsqueeze(0) > pool_scores.unsqueeze(1)).sum(dim=1)
        assert torch.equal(user_ranks[item, :limit], brute[:limit])


@pytest.mark.parametrize("max_cells", [2**24, 200_000])
def test_item_side_pool_is_each_items_teacher_top_non_interacting_users(bpr_context, max_cells):
    pool = top_users(bpr_context.teacher, bpr_context.history, 60, max_cells=max_cells)
    scores = masked_scores(bpr_context, bpr_context.teacher, users_too=True)
    best = scores.T.topk(60, dim=1).values
    picked = scores.T.gather(1, pool)
    finite = torch.isfinite(best)
    assert torch.allclose(picked[1:][finite[1:]], best[1:][finite[1:]], rtol=1e-5, atol=1e-7)
    assert (pool[1:][finite[1:]] != 0).all()


def test_item_side_lists_hold_non_interacting_users(dcd):
    users = dcd.item_lists.cpu()  # (n_items, 2K) user ids
    items = torch.arange(len(users)).unsqueeze(1).expand_as(users)
    rows, cols = users[1:].reshape(-1).numpy().copy(), items[1:].reshape(-1).numpy().copy()
    assert not np.asarray(dcd.context.history[rows, cols]).any()
    assert (users[1:] != 0).all()


# -- the batch loss ----------------------------------------------------------------------------------
def listwise(under: list[float], over: list[float]) -> float:
    """The paper's relaxed list-wise loss, written out: -sum_k [s_k - log(sum_{l>=k} e^s_l + sum_j e^o_j)]."""
    rest = sum(math.exp(o) for o in over)
    return -sum(under[k] - math.log(sum(math.exp(s) for s in under[k:]) + rest) for k in range(len(under)))


def test_listwise_loss_matches_hand_computed():
    e = math.exp
    by_hand = -(2.0 - math.log(e(2.0) + e(1.0) + e(0.5))) - (1.0 - math.log(e(1.0) + e(0.5)))
    assert listwise([2.0, 1.0], [0.5]) == pytest.approx(by_hand)


def test_batch_loss_sums_both_sides_over_batch_rows(bpr_context, first_batch):
    strategy = DCD(bpr_context, K=4, top_n=30, item_weight=0.5)
    strategy.prepare()
    strategy.on_epoch_start(1)
    ctx = strategy.context
    users = first_batch[ctx.uid_field]
    with torch.no_grad():
        user_table, item_table = (t.double() for t in ctx.student.representation_tables())
    expected = 0.0
    for user in users.unique().tolist():
        s = (item_table[strategy.user_lists[user]] @ user_table[user]).tolist()
        expected += listwise(s[:4], s[4:])
    for item in first_batch[ctx.iid_field].unique().tolist():
        s = (user_table[strategy.item_lists[item]] @ item_table[item]).tolist()
        expected += 0.5 * listwise(s[:4], s[4:])
    assert strategy.loss(first_batch).item() == pytest.approx(expected / len(users), rel=1e-4)


def test_user_side_only_when_item_weight_is_zero(bpr_context, first_batch):
    strategy = DCD(bpr_context, K=4, top_n=30, item_weight=0.0)
    strategy.prepare()
    strategy.on_epoch_start(1)
    assert strategy.user_pool is None and strategy.item_lists is None
    assert torch.isfinite(strategy.loss(first_batch))


def test_resampled_every_epoch_and_reproducible(ml100k):
    first, second = (DCD(make_context(ml100k, seed=2), K=10, top_n=60, item_weight=1.0) for _ in range(2))
    for strategy in (first, second):
        strategy.prepare()
        strategy.on_epoch_start(1)
    assert torch.equal(first.user_lists, second.user_lists) and torch.equal(first.item_lists, second.item_lists)
    before = first.user_lists.clone()
    first.on_epoch_start(2)
    assert not torch.equal(first.user_lists, before)


def test_gradients_reach_student_never_teacher(dcd, first_batch):
    assert dcd.family == "ranking" and dcd.weight == pytest.approx(0.01)
    assert_gradients_reach_student_only(dcd, first_batch)


def test_loss_before_sampling_is_an_error(bpr_context, first_batch):
    with pytest.raises(RuntimeError):
        DCD(bpr_context).loss(first_batch)


@pytest.mark.parametrize("hparams", [{"K": 0}, {"T": 0.0}, {"K": 50, "top_n": 40}, {"item_weight": -1.0}, {"tau": 1}])
def test_bad_hyperparameters_raise(bpr_context, hparams):
    with pytest.raises(KdbenchError):
        DCD(bpr_context, **hparams)


def test_too_few_eligible_entries_raise_at_prepare(bpr_context):
    # the most popular ml-100k item has fewer than 480 users who did not interact with it
    with pytest.raises(KdbenchError, match="item_weight=0"):
        DCD(bpr_context, K=480, top_n=900, item_weight=1.0).prepare()


def test_item_side_scores_agree_for_dot_product_and_generic_backbones(bpr_context):
    from kdbench.strategies.dcd import item_side_scores

    items, users = torch.tensor([3, 9]), torch.tensor([[1, 2, 5], [7, 1, 1]])
    fast = item_side_scores(bpr_context.student, items, users)
    generic = bpr_context.student.score(users.reshape(-1), items.repeat_interleave(3).unsqueeze(1)).view(2, 3)
    assert torch.allclose(fast, generic, atol=1e-6)


def test_runs_on_a_backbone_scored_through_predict(ml100k, first_batch):
    strategy = DCD(make_context(ml100k, teacher="BPR:16", student="NeuMF:4"), K=3, top_n=10)
    strategy.prepare()
    strategy.on_epoch_start(1)
    assert_gradients_reach_student_only(strategy, first_batch)


@pytest.mark.parametrize("max_cells", [2**24, 600_000])
def test_item_side_knowledge_agrees_between_item_blocks_and_user_chunks(bpr_context, max_cells):
    # dot-product backbones score blocks of items against all users; others go user chunk by user chunk
    from kdbench.backbones import BackboneAdapter

    teacher = bpr_context.teacher
    generic = BackboneAdapter(teacher.model, teacher.uid_field, teacher.iid_field)
    generic.name = "AnyOtherBackbone"  # not a dot-product backbone: full_scores only
    fast = top_users(teacher, bpr_context.history, 40, max_cells=max_cells)
    slow = top_users(generic, bpr_context.history, 40, max_cells=max_cells)
    scores = masked_scores(bpr_context, teacher, users_too=True).T
    fast_scores, slow_scores = scores.gather(1, fast)[1:], scores.gather(1, slow)[1:]
    finite = torch.isfinite(fast_scores)
    assert torch.allclose(fast_scores[finite], slow_scores[finite], rtol=1e-5, atol=1e-7)
    fast_ranks = unseen_user_ranks(teacher, bpr_context.history, fast, max_cells=max_cells)
    slow_ranks = unseen_user_ranks(generic, bpr_context.history, fast, max_cells=max_cells)
    assert (fast_ranks[1:][finite] == slow_ranks[1:][finite]).float().mean() > 0.999  # float ties aside


def test_capped_ranks_give_the_exact_ranks_weights(bpr_context):
    from kdbench.strategies.dcd import SATURATION
    from kdbench.strategies.knowledge import count_higher

    gen = torch.Generator().manual_seed(5)
    scores = torch.randn(50, 400, generator=gen)
    pool = torch.randint(0, 400, (50, 30), generator=gen)
    exact = count_higher(scores, scores.gather(1, pool))
    for cap in (40, 300):  # top-k selection (cap small against the row); histogram, then clamped
        assert torch.equal(count_higher(scores, scores.gather(1, pool), cap=cap), exact.clamp(max=cap))
    strategy = DCD(bpr_context, K=5, top_n=60, T=1.5, item_weight=1.0)
    strategy.prepare()
    cap = 60 + int(math.ceil(SATURATION * 1.5))
    with scoring_mode(bpr_context.student):
        full = unseen_ranks(bpr_context.student, bpr_context.history, strategy.item_pool)
        capped = unseen_ranks(bpr_context.student, bpr_context.history, strategy.item_pool, cap=cap)
        full_users = unseen_user_ranks(bpr_context.student, bpr_context.history, strategy.user_pool)
        capped_users = unseen_user_ranks(bpr_context.student, bpr_context.history, strategy.user_pool, cap=cap)
    assert (full > cap).any() and torch.equal(capped, full.clamp(max=cap))
    assert torch.equal(capped_users, full_users.clamp(max=cap))
    for under in (True, False):
        sides = ((full, capped, strategy.item_limits), (full_users, capped_users, strategy.user_limits))
        for exact_ranks, cut, limits in sides:
            assert torch.equal(discrepancy_log_weights(exact_ranks, limits, 1.5, under),
                               discrepancy_log_weights(cut, limits, 1.5, under))


# -- the published defaults (woriazzc/KDs modeling/KD/cf/baseline.py:399-479) -------------------------
def test_published_defaults(bpr_context):
    assert DCD.defaults == {"weight": 0.01, "K": 100, "T": 10.0, "top_n": 500, "item_weight": 0.0,
                            "teacher_order": False, "rank_unobserved": False}
    strategy = DCD(bpr_context, K=5, top_n=40)
    strategy.prepare()
    strategy.on_epoch_start(1)
    assert strategy.user_pool is None and strategy.item_lists is None  # the reference's user side only


def test_student_rank_counts_every_item_the_training_items_too(bpr_context, monkeypatch):
    import kdbench.strategies.dcd as dcd_module

    strategy = DCD(bpr_context, K=5, top_n=40)
    strategy.prepare()
    seen = {}

    def spy(adapter, history, pool, **kwargs):
        seen["history"], seen["ranks"] = history, unseen_ranks(adapter, history, pool, **kwargs)
        return seen["ranks"]

    monkeypatch.setattr(dcd_module, "unseen_ranks", spy)
    strategy.on_epoch_start(1)
    assert seen["history"].nnz == 0  # nothing masked: the student ranks among all items
    with torch.no_grad():
        scores = bpr_context.student.full_scores(torch.arange(bpr_context.n_users)).clone()
    scores[:, 0] = -torch.inf  # RecBole's padding item only
    cap = 40 + 20 * 10
    for user in (1, 7, 500):
        pool_scores = scores[user, strategy.item_pool[user]]
        brute = (scores[user].unsqueeze(0) > pool_scores.unsqueeze(1)).sum(dim=1)
        assert torch.equal(seen["ranks"][user], brute.clamp(max=cap))
    with scoring_mode(bpr_context.student):
        among_unobserved = unseen_ranks(bpr_context.student, bpr_context.history, strategy.item_pool, cap=cap)
    assert (seen["ranks"] >= among_unobserved).all() and (seen["ranks"] > among_unobserved).any()


def test_under_estimated_list_is_kept_in_draw_order(bpr_context):
    # one row, weights far apart: the heaviest pool positions come first far more often than last
    strategy = DCD(bpr_context, K=2, T=1.0)
    pool = torch.arange(10, 14).expand(4000, -1)
    student_ranks = torch.tensor([0, 1, 2, 30]).expand(4000, -1)  # only position 3 is under-estimated (tanh(27))
    lists = strategy.sample_lists(pool, student_ranks, torch.full((4000,), 4))
    under = lists[:, :2]
    assert (under[:, 0] == 13).float().mean() > 0.99  # drawn first, kept first though last in teacher order
    strategy = DCD(bpr_context, K=2, T=1.0, teacher_order=True)
    assert (strategy.sample_lists(pool, student_ranks, torch.full((4000,), 4))[:, 1] == 13).all()


def test_published_loss_matches_hand_computed(bpr_context, first_batch):
    # the reference's relaxed_ranking_loss on the lists as drawn, summed over the batch's users, / B
    strategy = DCD(bpr_context, K=2, top_n=20)
    strategy.prepare()
    strategy.on_epoch_start(1)
    ctx = strategy.context
    users = first_batch[ctx.uid_field]
    with torch.no_grad():
        user_table, item_table = (t.double() for t in ctx.student.representation_tables())
    e, expected = math.exp, 0.0
    for user in users.unique().tolist():
        u1, u2, o1, o2 = (item_table[strategy.user_lists[user]] @ user_table[user]).tolist()
        rest = e(o1) + e(o2)
        expected += -(u1 - math.log(e(u1) + e(u2) + rest)) - (u2 - math.log(e(u2) + rest))
    assert strategy.loss(first_batch).item() == pytest.approx(expected / len(users), rel=1e-5)
