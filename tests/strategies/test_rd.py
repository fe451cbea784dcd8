"""RD: the loss, the position and rank-discrepancy weights, the batch reduction, the teacher's isolation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

from _helpers_ranking import any_training_pair, assert_gradients_reach_student_only, assert_is_teacher_top_k
from _helpers_sampling import (
    allowed_mask, allowed_positions, assert_follows, by_group, fixed_context, lookup, one_thread, over_epochs,
    teacher_top, user_groups,
)
from kdbench.errors import KdbenchError
from kdbench.strategies import STRATEGIES
from kdbench.strategies import rd as rd_module
from kdbench.strategies.rd import RD, rd_dynamic_weights, rd_loss, rd_position_weights


def _log_sigmoid(x: float) -> float:
    return math.log(1.0 / (1.0 + math.exp(-x)))


def test_rd_loss_matches_hand_computed():
    scores = torch.tensor([[1.0, -0.5], [2.0, 0.0]])
    weights = torch.tensor([0.7, 0.3])
    user0 = -(0.7 * _log_sigmoid(1.0) + 0.3 * _log_sigmoid(-0.5))
    user1 = -(0.7 * _log_sigmoid(2.0) + 0.3 * _log_sigmoid(0.0))
    assert rd_loss(scores, weights).tolist() == pytest.approx([user0, user1], rel=1e-6)


@pytest.mark.parametrize("lambda_pos", [1.0, 2.5])
def test_position_weights_are_exp_minus_rank_over_lambda_normalised(lambda_pos):
    raw = [math.exp(-r / lambda_pos) for r in (1, 2, 3)]
    expected = [w / sum(raw) for w in raw]
    assert rd_position_weights(3, lambda_pos).tolist() == pytest.approx(expected, rel=1e-6)


def test_dynamic_weights_match_hand_computed():
    # 99 real items, 4 samples. Candidate 0 (position 0, score 0.5): 1 sample above ->
    # rank floor(99 * 1/4) = 24, weight tanh(0.1 * (24 - 0)). Candidate 1 (position 1, score 0.0):
    # 3 above -> rank floor(99 * 3/4) = 74, tanh(0.1 * (74 - 1)). Candidate 2 (position 2, 9.0):
    # none above -> rank 0 < 2 -> tanh(max(-0.2, 0)) = 0.
    candidates = torch.tensor([[0.5, 0.0, 9.0]])
    samples = torch.tensor([[1.0, 0.2, -1.0, 0.3]])
    weights = rd_dynamic_weights(candidates, samples, n_real_items=99, mu=0.1)
    assert weights.tolist()[0] == pytest.approx([math.tanh(2.4), math.tanh(7.3), 0.0], rel=1e-6)


def test_a_sample_scored_level_with_a_candidate_is_not_above_it():
    # 10 real items, 2 samples: one level with the candidate, one below -> none above -> rank 0
    weights = rd_dynamic_weights(torch.tensor([[0.5]]), torch.tensor([[0.5, 0.1]]), n_real_items=10, mu=1.0)
    assert weights.tolist() == [[0.0]]


def test_defaults_follow_the_reference():
    assert RD.defaults == {"weight": 1.0, "K": 10, "lambda_pos": 1.0, "dynamic": True, "mu": 0.1,
                           "dynamic_samples": 100, "dynamic_start_epoch": 10}


def test_distils_the_teacher_top_k_outside_training(bpr_context, ml100k):
    strategy = RD(bpr_context, K=15)
    strategy.prepare()
    assert_is_teacher_top_k(bpr_context, strategy._top)
    assert not any_training_pair(ml100k.history, strategy._top)


def _row_by_row(strategy: RD, batch, dynamic_weights: bool) -> float:
    """(1 / B) * sum over the batch's rows of RD for the row's user, computed one row at a time."""
    users = batch[strategy.context.uid_field]
    total = 0.0
    for user in users.tolist():
        u = torch.tensor([user])
        scores = strategy.context.student.score(u, strategy._top[u])
        weights = strategy.position_weights
        if dynamic_weights:
            samples = strategy.context.student.score(u, strategy._samples[u])
            weights = weights * rd_dynamic_weights(scores, samples, strategy.context.n_items - 1, 0.1)
        total += rd_loss(scores, weights).item()
    return total / len(users)


def test_static_weights_until_start_epoch_then_hybrid(bpr_context, ml100k, first_batch):
    first_batch = first_batch[:64]  # enough rows to hold repeated users, few enough to loop over
    assert len(first_batch[bpr_context.uid_field].unique()) < 64
    strategy = RD(bpr_context)
    strategy.prepare()
    strategy.on_epoch_start(10)
    assert strategy._samples is None
    assert strategy.loss(first_batch).item() == pytest.approx(_row_by_row(strategy, first_batch, False), rel=1e-4)
    strategy.on_epoch_start(11)
    assert strategy._samples.shape == (ml100k.n_users, 100)
    assert (strategy._samples > 0).all() and not any_training_pair(ml100k.history, strategy._samples)
    assert strategy.loss(first_batch).item() == pytest.approx(_row_by_row(strategy, first_batch, True), rel=1e-4)


def test_dynamic_off_keeps_static_weights(bpr_context):
    strategy = RD(bpr_context, dynamic=False)
    strategy.prepare()
    strategy.on_epoch_start(50)
    assert strategy._samples is None


# -- the rank-estimation samples and dynamic weights, through the strategy --------------------------
RD_HPARAMS = {"K": 2, "lambda_pos": 0.5, "dynamic_samples": 20, "mu": 0.01, "dynamic_start_epoch": 3}


def test_strategy_draws_its_rank_estimation_samples_uniformly_with_replacement():
    """No samples up to dynamic_start_epoch = 3; then, each epoch, dynamic_samples = 20 items per
    user drawn uniformly, with replacement, from the user's non-training items (the teacher's
    top-K included)."""
    context = fixed_context()
    strategy = RD(context, **RD_HPARAMS)
    strategy.prepare()
    for epoch in (1, 2, 3):
        strategy.on_epoch_start(epoch)
        assert strategy._samples is None
    drawn = over_epochs(strategy, range(4, 154), lambda s: s._samples)
    assert drawn.shape[2] == 20
    allowed = allowed_mask(context)
    positions = lookup(allowed_positions(allowed), drawn)
    counts = allowed.sum(axis=1)
    groups = user_groups(context, counts)
    assert set(counts[1:].tolist()) == {36, 32, 15}
    uniform = {count: {position: 1 / count for position in range(count)} for count in set(counts.tolist())}
    assert_follows(by_group(positions, groups, each_entry=True), uniform)
    # with replacement: two draws of a row coincide with probability 1 / (allowed items)
    same = positions[:, :, 0] == positions[:, :, 1]
    pmfs = {count: {True: 1 / count, False: 1 - 1 / count} for count in set(counts.tolist())}
    assert_follows(by_group(same[:, :, None], groups), pmfs)


def test_strategy_dynamic_weights_follow_the_binomial_rank_estimate_with_its_mu_and_samples(monkeypatch):
    """The weights the strategy hands to rd_loss: the static ones (lambda_pos = 0.5) up to
    dynamic_start_epoch, then w^a_r * tanh(max(mu (rank_S - (r - 1)), 0)) with
    rank_S = floor(40 X / 20), X the number of a user's 20 samples that the (fixed) student scores
    above pi_r: Binomial(20, q), q the share of the user's non-training items scored above pi_r."""
    context = fixed_context()
    strategy = RD(context, **RD_HPARAMS)
    strategy.prepare()
    handed: list[torch.Tensor] = []

    def spy(scores, weights):
        handed.append(torch.as_tensor(weights).detach().clone())
        return rd_loss(scores, weights)

    monkeypatch.setattr(rd_module, "rd_loss", spy)
    users = torch.arange(1, context.n_users)
    batch = {context.uid_field: users}
    static = rd_position_weights(2, 0.5)
    with one_thread():
        for epoch in range(1, 154):
            strategy.on_epoch_start(epoch)
            strategy.loss(batch)
    assert all(torch.equal(w, static) for w in handed[:3])
    dynamic = (torch.stack(handed[3:]) / static).numpy()  # (150, 30 users, K = 2)

    n_real, n_samples, mu = context.n_items - 1, 20, 0.01
    student = context.student.model.table.numpy()
    allowed = allowed_mask(context)
    top = teacher_top(context, 2).numpy()
    for r in range(2):
        grid = np.tanh(np.maximum(mu * (n_real * np.arange(n_samples + 1) // n_samples - r), 0))
        nearest = np.abs(dynamic[:, :, r, None] - grid).argmin(axis=2)
        assert np.allclose(grid[nearest], dynamic[:, :, r], atol=1e-5)  # every weight is on the grid
        samples, pmfs = {}, {}
        for column, user in enumerate(users.tolist()):
            above = student[user, allowed[user]] > student[user, top[user, r]]
            samples[user] = nearest[:, column].tolist()
            pmfs[user] = dict(enumerate(binom.pmf(np.arange(n_samples + 1), n_samples, above.mean())))
        assert_follows(samples, pmfs)


@pytest.mark.parametrize("epoch", [1, 11])
def test_integration_gradients_reach_student_never_teacher(epoch, bpr_context, first_batch):
    strategy = STRATEGIES.get("rd")(bpr_context)
    assert strategy.family == "ranking" and strategy.weight == 1.0
    strategy.prepare()
    strategy.on_epoch_start(epoch)
    assert_gradients_reach_student_only(strategy, first_batch)


@pytest.mark.parametrize(
    "hparams",
    [{"temperature": 1.0}, {"K": -3}, {"mu": -0.1}, {"lambda_pos": -1.0}, {"lambda_pos": 0.0},
     {"K": 0}, {"dynamic_samples": 0}, {"dynamic_start_epoch": -1}, {"weight": -1.0}],
)
def test_bad_hyperparameters_raise(bpr_context, hparams):
    with pytest.raises(KdbenchError):
        RD(bpr_context, **hparams)


def test_the_users_outside_items_must_hold_exactly_k():
    context = fixed_context()  # user 3 is the first with 25 training items: 15 outside
    RD(context, K=15).prepare()
    with pytest.raises(KdbenchError, match="needs K = 16 .* user 3 has only 15: lower K"):
        RD(context, K=16).prepare()


def test_epoch_start_and_loss_before_prepare_are_errors():
    strategy = RD(fixed_context())
    with pytest.raises(RuntimeError, match="call prepare\\(\\) before training"):
        strategy.on_epoch_start(1)
    with pytest.raises(RuntimeError, match="call prepare\\(\\) before loss"):
        strategy.loss({strategy.context.uid_field: torch.tensor([1])})
