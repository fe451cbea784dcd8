"""RCE-KD: the mixed cross-entropy, the rank-weighted sampling of interesting items, the lists."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _helpers_response_feature import check_gradients, check_not_counted, check_rejects_bad_hparams, ready
from _helpers_sampling import merged_chisquare_pvalue
from kdbench.errors import KdbenchError
from kdbench.strategies.rce_kd import RCEKD, interesting_log_weights, rce_kd_loss, rowwise_isin


def reference_rce(s_s, t_s, s_t, t_t, s_i, t_i, t_items, i_items, s_items, tau, beta):
    """A direct transcription of the reference's arithmetic (exp of logits, masks, sums), float64."""
    s_s, t_s, s_t, t_t, s_i, t_i = (x.double() / tau for x in (s_s, t_s, s_t, t_t, s_i, t_i))
    prob_t_s = t_s.exp() / t_s.exp().sum(-1, keepdim=True)
    loss_s = -(prob_t_s * torch.log_softmax(s_s, -1)).sum(-1)
    mask = (t_items.unsqueeze(2) == i_items.unsqueeze(1)).any(2)
    mask2 = (t_items.unsqueeze(2) == s_items.unsqueeze(1)).any(2)
    exp_t_t = t_t.exp().masked_fill(mask | mask2, 0)
    z_t = t_i.exp().sum(-1, keepdim=True) + exp_t_t.sum(-1, keepdim=True)
    prob_all = torch.cat([t_i.exp(), exp_t_t], -1) / z_t
    exp_s_t = s_t.exp() * (~mask).double() * (~mask2).double()
    z_s = s_i.exp().sum(-1, keepdim=True) + exp_s_t.sum(-1, keepdim=True)
    loss_t = -(prob_all * (torch.cat([s_i, s_t], -1) - z_s.log())).sum(-1)
    weight = torch.exp(-beta * mask.double().mean(-1))
    return (1 - weight) * loss_s + weight * loss_t


# -- the loss ---------------------------------------------------------------------------------------
def test_loss_matches_hand_computed():
    # K = 2, L = 1. S = [a, b], T = [c, a], I = [c]: T's c is in I, a is in S, so L2 is over I alone
    # (a single item: CE = 0) and overlap = 1/2.
    s_s, t_s = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    s_t, t_t = torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    s_i, t_i = torch.tensor([[3.0]]), torch.tensor([[1.0]])
    t_in_i, t_in_s = torch.tensor([[True, False]]), torch.tensor([[False, True]])
    p = [1 / (1 + math.exp(2)), math.exp(2) / (1 + math.exp(2))]
    log_q = [1 - math.log(math.exp(1) + 1), -math.log(math.exp(1) + 1)]
    loss_s = -(p[0] * log_q[0] + p[1] * log_q[1])
    w = math.exp(-3.0 * 0.5)
    expected = (1 - w) * loss_s + w * 0.0
    loss = rce_kd_loss(s_s, t_s, s_t, t_t, s_i, t_i, t_in_i, t_in_s, tau=1.0, beta=3.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("tau, beta", [(1.0, 3.0), (10.0, 5.0)])
def test_loss_equals_the_reference_expression(tau, beta):
    gen = torch.Generator().manual_seed(0)
    n, k, l_, n_items = 6, 5, 4, 12
    perm = torch.stack([torch.randperm(n_items, generator=gen) for _ in range(3 * n)])
    s_items, t_items, i_items = perm[:n, :k], perm[n : 2 * n, :k], perm[2 * n :, :l_]
    scores = {name: torch.randn(n, width, generator=gen) * 3
              for name, width in (("s_s", k), ("t_s", k), ("s_t", k), ("t_t", k), ("s_i", l_), ("t_i", l_))}
    t_in_i, t_in_s = rowwise_isin(t_items, i_items), rowwise_isin(t_items, s_items)
    ours = rce_kd_loss(scores["s_s"], scores["t_s"], scores["s_t"], scores["t_t"], scores["s_i"], scores["t_i"],
                       t_in_i, t_in_s, tau, beta)
    reference = reference_rce(scores["s_s"], scores["t_s"], scores["s_t"], scores["t_t"], scores["s_i"], scores["t_i"],
                              t_items, i_items, s_items, tau, beta)
    assert ours.double().tolist() == pytest.approx(reference.tolist(), rel=1e-5)


def test_loss_is_finite_for_large_logits():
    big = torch.tensor([[400.0, 390.0]], requires_grad=True)
    loss = rce_kd_loss(big, big.detach(), big, big.detach(), big, big.detach(),
                       torch.zeros(1, 2, dtype=torch.bool), torch.zeros(1, 2, dtype=torch.bool), 1.0, 3.0)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(big.grad).all()


def test_rowwise_isin_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    values, sets = torch.randint(0, 30, (50, 7), generator=gen), torch.randint(0, 30, (50, 9), generator=gen)
    assert torch.equal(rowwise_isin(values, sets), (values.unsqueeze(2) == sets.unsqueeze(1)).any(2))


def test_interesting_weights_count_teacher_items_at_or_below_each_position():
    student_top = torch.tensor([[5, 9, 2, 7, 1]])
    teacher_top = torch.tensor([[7, 9]])  # at student positions 1 and 3
    log_weights = interesting_log_weights(student_top, teacher_top, temperature=10.0)
    assert log_weights[0].tolist() == pytest.approx([(2 + 1) / 10, (2 + 1) / 10, (1 + 1) / 10, (1 + 1) / 10, 1 / 10])


# -- the sampling and the lists ----------------------------------------------------------------------
def test_first_interesting_draw_follows_the_weights_through_the_strategy(ml100k):
    _, strategy = ready(ml100k, "rce-kd", K=4, L=3, mxK=12, T=1.0)
    rows = 20_000
    student_top = torch.arange(10, 22).expand(rows, -1)  # positions 0..11
    strategy.teacher_top = torch.tensor([13, 17, 21, 30]).expand(rows, -1)  # at positions 3, 7, 11
    positions = strategy.sample_positions(student_top)
    counts = np.array([3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1])
    weights = np.exp((counts + 1) / 1.0)
    observed = np.bincount(positions[:, 0].numpy(), minlength=12)
    assert merged_chisquare_pvalue(observed, rows * weights / weights.sum()) > 0.001
    distinct = positions.sort(dim=1).values
    assert (distinct[:, 1:] != distinct[:, :-1]).all()


def test_epoch_lists_are_student_and_teacher_top_items(ml100k):
    context, strategy = ready(ml100k, "rce-kd", K=10, L=8, mxK=40)
    users = torch.arange(1, 40)
    with torch.no_grad():
        student, teacher = context.student.full_scores(users), context.teacher.full_scores(users)
    student[:, 0] = teacher[:, 0] = -torch.inf
    lists = strategy._lists[users]
    s_items, t_items, i_items = lists[:, :10], lists[:, 10:20], lists[:, 20:]
    assert torch.allclose(student.gather(1, s_items), student.topk(10).values)  # training items included
    assert torch.allclose(teacher.gather(1, t_items), teacher.topk(10).values)
    top40 = student.topk(40).indices
    assert (i_items.unsqueeze(2) == top40.unsqueeze(1)).any(2).all()
    assert torch.allclose(strategy._teacher_si[users], teacher.gather(1, torch.cat([s_items, i_items], 1)), atol=1e-5)
    assert torch.equal(strategy._masks[users, 0], rowwise_isin(t_items, i_items))
    assert torch.equal(strategy._masks[users, 1], rowwise_isin(t_items, s_items))


def test_batch_loss_is_the_mean_over_rows(ml100k, first_batch):
    context, strategy = ready(ml100k, "rce-kd", tau=2.0, beta=1.0)
    users = first_batch[context.uid_field]
    lists = strategy._lists[users]
    k = 50
    s = context.student.score(users, lists)
    t = context.teacher.score(users, lists)
    masks = strategy._masks[users]
    rows = rce_kd_loss(s[:, :k], t[:, :k], s[:, k : 2 * k], t[:, k : 2 * k], s[:, 2 * k :], t[:, 2 * k :],
                       masks[:, 0], masks[:, 1], 2.0, 1.0)
    assert strategy.loss(first_batch).item() == pytest.approx(rows.mean().item(), rel=1e-4)


def test_resampled_each_epoch(ml100k):
    _, strategy = ready(ml100k, "rce-kd")
    before = strategy._lists.clone()
    strategy.on_epoch_start(2)
    assert not torch.equal(before[:, 100:], strategy._lists[:, 100:])  # I is redrawn
    assert torch.equal(before[:, :100], strategy._lists[:, :100])  # the same student: S and T stay


def test_gradient_reaches_student_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "rce-kd")
    assert strategy.family == "response" and strategy.weight == pytest.approx(500.0)
    check_gradients(context, strategy, first_batch)


def test_no_training_only_parameters(ml100k, first_batch):
    check_not_counted(ml100k, "rce-kd", first_batch)


def test_rejects_bad_hparams(ml100k):
    check_rejects_bad_hparams(ml100k, "rce-kd", RCEKD.must_be_positive)
    with pytest.raises(KdbenchError, match="mxK"):
        ready(ml100k, "rce-kd", K=50, mxK=40)
