"""RD: the loss, the position and rank-discrepancy weights, the batch reduction, the teacher's isolation."""

from __future__ import annotations

import math

import pytest
import torch

from _helpers_ranking import any_training_pair, assert_gradients_reach_student_only, assert_is_teacher_top_k
from kdbench.errors import KdbenchError
from kdbench.strategies import STRATEGIES
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
