"""CD (Collaborative Distillation: soft labels on rank-sampled unobserved items)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _helpers_response_feature import (
    check_gradients,
    check_integration,
    check_not_counted,
    check_rejects_bad_hparams,
    ready,
)
from _helpers_sampling import (
    as_cells, as_sets, assert_follows, best_of_two, by_group, exp_rank_pmf, fixed_context, lookup, over_epochs,
    successive_draws, teacher_ranks, unobserved_counts, user_groups,
)
from kdbench.strategies.cd import CD, cd_loss, first_occurrences, rank_weights, sample_ranks
from kdbench.strategies.knowledge import teacher_top_n


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_cd_loss_matches_hand_computed():
    student = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    teacher = torch.tensor([[2.0, 0.0], [-2.0, 6.0]])
    t1, t2 = 2.0, 0.0

    def bce(q: float, s: float) -> float:
        return -(q * math.log(sigmoid(s)) + (1 - q) * math.log(1 - sigmoid(s)))

    row1 = bce(sigmoid(1.0), 0.5) + bce(0.5, -1.0)  # q = sig(2 / 2), sig(0 / 2)
    row2 = bce(sigmoid(-1.0), 2.0) + bce(sigmoid(3.0), 0.0)
    assert cd_loss(student, teacher, t1, t2).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)
    # t2 shifts the teacher's score before the temperature: q = sig((0 + 2) / 2) on a single item
    shifted = cd_loss(torch.tensor([[0.5]]), torch.tensor([[0.0]]), t1, 2.0)
    assert shifted.item() == pytest.approx(bce(sigmoid(1.0), 0.5), rel=1e-6)


def test_cd_loss_counts_weight_rows_as_repeated_rows():
    student = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    teacher = torch.tensor([[2.0, 0.0], [-2.0, 6.0]])
    repeated = cd_loss(student[[0, 1, 1]], teacher[[0, 1, 1]], 2.0, 0.0)
    weighted = cd_loss(student, teacher, 2.0, 0.0, counts=torch.tensor([1, 2]))
    assert weighted.item() == pytest.approx(repeated.item(), rel=1e-6)


def cd_stated_pmf(n_top: int, temperature: float, limit: int) -> np.ndarray:
    """CD's rank pmf: the better of two ranks drawn with p(r) ~ exp(-r / (N T)), r = 1..N,
    truncated to the row's first `limit` ranks (index r - 1)."""
    pmf = exp_rank_pmf(n_top, n_top * temperature)[:limit]
    return best_of_two(pmf / pmf.sum())


def test_rank_sampler_follows_the_better_of_two_draws_truncated_to_each_rows_limit():
    # p(r) ~ exp(-r / 6) over 12 ranks: a row limited to 4 ranks loses half the mass, so a sampler
    # that ignored the truncated mass (drawing from all 12 and clipping) would pile it on rank 4
    n_top, temperature = 12, 0.5
    limits = torch.tensor([10, 4]).repeat(20_000)
    ranks = sample_ranks(limits, 1, n_top, temperature, torch.Generator().manual_seed(3))
    assert ranks.shape == (40_000, 1)
    pmfs = {limit: as_cells(cd_stated_pmf(n_top, temperature, limit)) for limit in (10, 4)}
    assert_follows(by_group(ranks[None].numpy(), limits.numpy()), pmfs)


def test_rank_sampler_keeps_the_first_n_distill_distinct_ranks_in_draw_order():
    # the ordered triples of the first 3 distinct ranks of a sequence of better-of-two draws
    n_top, temperature = 12, 0.5
    limits = torch.tensor([12, 6]).repeat(10_000)
    ranks = sample_ranks(limits, 3, n_top, temperature, torch.Generator().manual_seed(5))
    pmfs = {limit: successive_draws(cd_stated_pmf(n_top, temperature, limit), 3) for limit in (12, 6)}
    assert_follows(by_group(ranks[None].numpy(), limits.numpy()), pmfs)


def test_rank_weights_are_exp_minus_rank_over_n_t_in_float64():
    weights = rank_weights(4, 0.5)  # N T = 2
    assert weights.dtype == torch.float64
    assert weights.tolist() == pytest.approx([math.exp(-r / 2) for r in (1, 2, 3, 4)], rel=1e-12)


def test_rank_sampler_caps_each_limit_to_the_list_and_an_empty_row_to_one_rank():
    ranks = sample_ranks(torch.tensor([0, 50]).repeat(500), 1, 10, 1.0, torch.Generator().manual_seed(0))
    assert (ranks[0::2] == 0).all()  # limit 0 is treated as 1: rank 1
    assert ranks[1::2].max() < 10 and ranks[1::2].max() >= 5  # limit 50 is the list's 10


def test_first_occurrences_marks_the_earliest_position_of_each_value():
    # wide rows with many ties (an unstable sort would mark a later repeat as the first)
    rows = torch.randint(0, 4, (50, 200), generator=torch.Generator().manual_seed(0))
    expected = torch.tensor([[value not in row[:position] for position, value in enumerate(row)] for row in rows.tolist()])
    assert torch.equal(first_occurrences(rows), expected)


def test_rank_sampler_returns_distinct_ranks_within_each_rows_limit():
    limits = torch.tensor([3, 5, 100, 100, 1])
    ranks = sample_ranks(limits, 4, 100, 0.05, torch.Generator().manual_seed(0))
    assert ranks.shape == (5, 4)
    for row, limit in zip(ranks.tolist(), limits.tolist()):
        assert max(row) < limit
        assert len(set(row)) == min(4, limit)  # a row with fewer ranks than n_distill repeats


def test_rank_sampler_is_reproducible_with_the_generator():
    limits = torch.full((50,), 30)
    first = sample_ranks(limits, 5, 30, 1.0, torch.Generator().manual_seed(7))
    again = sample_ranks(limits, 5, 30, 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)


def test_samples_are_unobserved_items_from_the_teacher_top_n(ml100k):
    context, strategy = ready(ml100k, "cd", N=300, n_distill=10)
    top = teacher_top_n(context.teacher, context.history, 300)
    history = context.history.tocsr()
    items = strategy.items
    assert items.shape == (context.n_users, 10)
    for user in range(1, context.n_users, 50):
        row = items[user].tolist()
        assert len(set(row)) == 10 and 0 not in row
        assert set(row) <= set(top[user].tolist())
        assert not set(row) & set(history[user].indices.tolist())
    users = torch.arange(1, 40)
    with torch.no_grad():
        expected = context.teacher.score(users, items[users])
    assert torch.allclose(strategy.teacher_scores[users], expected, atol=1e-5)


def test_heavy_users_never_get_training_items_when_n_exceeds_their_unobserved_count(ml100k):
    context, strategy = ready(ml100k, "cd", N=3000, n_distill=50)  # N clipped to the catalogue
    history = context.history.tocsr()
    heavy = int(np.argmax(np.diff(history.indptr)))
    for epoch in range(2, 4):
        strategy.on_epoch_start(epoch)
        assert not set(strategy.items[heavy].tolist()) & set(history[heavy].indices.tolist())


def test_resampled_each_epoch_and_reproducible_by_seed(ml100k):
    _, strategy = ready(ml100k, "cd", seed=4)
    first = strategy.items.clone()
    strategy.on_epoch_start(2)
    assert not torch.equal(first, strategy.items)
    _, again = ready(ml100k, "cd", seed=4)
    assert torch.equal(first, again.items)


def test_loss_equals_mean_over_batch_rows(ml100k, first_batch):
    context, strategy = ready(ml100k, "cd", n_distill=5, t1=3.0, t2=1.0)
    users = first_batch[context.uid_field]
    items = strategy.items[users]
    row_wise = cd_loss(context.student.score(users, items), context.teacher.score(users, items), 3.0, 1.0)
    assert strategy.loss(first_batch).item() == pytest.approx(row_wise.item(), rel=1e-5)


def test_gradient_reaches_student_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "cd")
    check_gradients(context, strategy, first_batch)


def test_no_training_only_parameters(ml100k, first_batch):
    check_not_counted(ml100k, "cd", first_batch)


def test_rejects_unknown_negative_and_zero_hparams(ml100k):
    check_rejects_bad_hparams(ml100k, "cd", must_be_positive=("n_distill", "N", "T", "t1"))


@pytest.mark.parametrize("teacher", ["BPR:32", "ENMF:8"])
def test_integration_on_any_backbone(ml100k, first_batch, teacher):
    """ENMF has no representation getter in kdbench: CD needs only scores."""
    context, strategy = ready(ml100k, "cd", teacher=teacher)
    check_integration(strategy, first_batch)


# -- the sampling, through the strategy ---------------------------------------------------------
def drawn_ranks(context, strategy: CD, epochs: range) -> np.ndarray:
    """(epochs, n_users, n_distill) teacher ranks of the items the strategy sampled each epoch."""
    strategy.prepare()
    return lookup(teacher_ranks(context), over_epochs(strategy, epochs, lambda s: s.items))


def test_strategy_samples_ranks_with_its_n_and_t():
    """prepare + 300 epochs on a fixed teacher: each user's item is the better of two ranks with
    p(r) ~ exp(-r / (N T)) for the N and T it was given, truncated to the user's unobserved ranks."""
    context = fixed_context()
    n_top, temperature = 20, 0.25  # N T = 5 ranks; users with 25 training items have 15 unobserved
    ranks = drawn_ranks(context, CD(context, N=n_top, T=temperature, n_distill=1), range(1, 301))
    limits = np.minimum(unobserved_counts(context), n_top)
    assert set(limits[1:].tolist()) == {15, 20}  # full and truncated lists
    pmfs = {limit: as_cells(cd_stated_pmf(n_top, temperature, limit)) for limit in (15, 20)}
    assert_follows(by_group(ranks, user_groups(context, limits)), pmfs)


def test_strategy_samples_n_distill_distinct_ranks_as_the_first_distinct_draws():
    """With n_distill = 3 the set of a user's items is that of the first 3 distinct ranks of the
    better-of-two draws (ranks 1..16, and 1..15 for the users with 15 unobserved items)."""
    context = fixed_context()
    n_top, temperature = 16, 0.2
    ranks = drawn_ranks(context, CD(context, N=n_top, T=temperature, n_distill=3), range(1, 301))
    assert ranks.shape[2] == 3
    limits = np.minimum(unobserved_counts(context), n_top)
    pmfs = {limit: as_sets(successive_draws(cd_stated_pmf(n_top, temperature, limit), 3)) for limit in (15, 16)}
    assert_follows(by_group(np.sort(ranks, axis=2), user_groups(context, limits)), pmfs)


def test_a_user_with_one_unobserved_item_always_gets_it():
    context = fixed_context(training_counts=(39,))  # 40 real items: one unobserved per user
    strategy = CD(context, N=5, n_distill=1, T=50.0)
    ranks = drawn_ranks(context, strategy, range(1, 21))
    assert (ranks[:, 1:] == 0).all()  # never one of the training items that fill the rest of the top 5


def test_users_with_two_unobserved_items_draw_both_and_nothing_else():
    context = fixed_context(training_counts=(38,))
    strategy = CD(context, N=5, n_distill=1, T=50.0)  # nearly flat: the better of two is rank 2 a quarter of the time
    ranks = drawn_ranks(context, strategy, range(1, 21))[:, 1:]
    assert set(np.unique(ranks).tolist()) == {0, 1}


def test_loss_weights_each_distinct_user_by_its_rows_in_the_batch():
    context = fixed_context()
    strategy = CD(context, N=10, n_distill=3, t1=4.0)
    strategy.prepare()
    strategy.on_epoch_start(1)

    def loss(users: list[int]) -> float:
        return strategy.loss({context.uid_field: torch.tensor(users)}).item()

    assert loss([1, 1, 1, 2]) == pytest.approx((3 * loss([1]) + loss([2])) / 4, rel=1e-6)
    assert loss([1]) != pytest.approx(loss([2]), rel=1e-2)  # so the weighting shows


def test_epoch_start_before_prepare_and_loss_before_epoch_start_are_errors():
    strategy = CD(fixed_context())
    with pytest.raises(RuntimeError, match="called before prepare"):
        strategy.on_epoch_start(1)
    with pytest.raises(RuntimeError, match="called before on_epoch_start"):
        strategy.loss({strategy.context.uid_field: torch.tensor([1])})
