"""DLLM2Rec: the importance weights and the ranking loss against hand-computed values, and where its
gradient goes."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.errors import KdbenchError
from kdbench.strategies.dllm2rec import DLLM2Rec, embedding_loss, importance_weights, ranking_loss
from conftest import make_context


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_weights_and_loss_match_a_hand_computation():
    # one row, K = 2: teacher scores (2, 0); the first item is in the student's top-K, the second not
    teacher = torch.tensor([[2.0, 0.0]])
    in_top = torch.tensor([[True, False]])
    weights = importance_weights(teacher, in_top, 0.3, 0.5, 0.1, rank_temp=1.0)
    position = [math.exp(-1) / (math.exp(-1) + math.exp(-2)), math.exp(-2) / (math.exp(-1) + math.exp(-2))]
    confidence = [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]
    consistency = [1 + 1e-8, 1e-8]
    mixed = [0.3 * p + 0.5 * c + 0.1 * s for p, c, s in zip(position, confidence, consistency)]
    expected = [m / sum(mixed) for m in mixed]
    assert weights[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert weights[0].tolist() == pytest.approx([0.844129, 0.155871], abs=1e-6)
    # student scores 1 and -1 on the two candidates, 0.5 on the row's negative
    loss = ranking_loss(torch.tensor([[1.0, -1.0]]), torch.tensor([0.5]), weights)
    by_hand = sum(w * (softplus(-s) + softplus(0.5)) for w, s in zip(expected, (1.0, -1.0)))
    assert float(loss) == pytest.approx(by_hand, rel=1e-6)
    assert float(loss) == pytest.approx(1.44320, abs=1e-4)


def test_ranking_loss_is_the_row_mean():
    weights = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    scores = torch.tensor([[0.0, 3.0], [1.0, 2.0]])
    negatives = torch.tensor([0.0, -1.0])
    rows = [softplus(0.0) + softplus(0.0),
            0.5 * (softplus(-1.0) + softplus(-1.0)) + 0.5 * (softplus(-2.0) + softplus(-1.0))]
    assert float(ranking_loss(scores, negatives, weights)) == pytest.approx(sum(rows) / 2, rel=1e-6)


def test_embedding_loss_is_the_mean_squared_distance():
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    projected = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    assert float(embedding_loss(student, projected)) == pytest.approx((1.0 + 4.0) / 2)


def test_gradient_reaches_the_student_and_projector_not_the_teacher(ml100k, first_batch):
    context = make_context(ml100k)
    strategy = DLLM2Rec(context)
    strategy.prepare()
    loss = strategy.loss(first_batch)
    assert loss.requires_grad and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None for p in context.teacher.model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in context.student.model.parameters())
    assert strategy.projector.weight.grad is not None and strategy.projector.weight.grad.abs().sum() > 0


def test_candidates_are_the_teachers_top_k_and_the_weights_sum_to_one(ml100k, first_batch):
    context = make_context(ml100k)
    strategy = DLLM2Rec(context, K=5, ed_weight=0.0)
    strategy.prepare()
    assert strategy.projector is None
    user = int(first_batch[context.uid_field][0])
    scores = context.teacher.full_scores(torch.tensor([user])).float()[0]
    scores[0] = -torch.inf
    scores[torch.from_numpy(context.history[user].indices).long()] = -torch.inf
    assert set(strategy.candidates[user].tolist()) == set(scores.topk(5).indices.tolist())
    assert strategy.teacher_scores[user].tolist() == pytest.approx(scores.topk(5).values.tolist(), rel=1e-5)


def test_all_gammas_zero_is_refused(ml100k):
    with pytest.raises(KdbenchError, match="gamma"):
        DLLM2Rec(make_context(ml100k), gamma_position=0, gamma_confidence=0, gamma_consistency=0)


def test_the_strategys_loss_is_the_formula_on_its_batch(ml100k, first_batch):
    """The batch's loss, rebuilt from the teacher's scores, the student's and the run's generator."""
    from kdbench.strategies._sampling import ItemExclusions, sample_allowed

    context = make_context(ml100k)
    strategy = DLLM2Rec(context, K=4)
    strategy.prepare()
    loss = float(strategy.loss(first_batch))
    users = first_batch[context.uid_field]
    negatives = sample_allowed(ItemExclusions(context.history), users, 1, context.generator())[:, 0]
    with torch.no_grad():
        teacher = context.teacher.full_scores(users).float()
        student = context.student.full_scores(users).float()
    teacher[:, 0] = student[:, 0] = -torch.inf
    rows, cols = context.history[users.numpy()].nonzero()
    teacher[torch.from_numpy(rows).long(), torch.from_numpy(cols).long()] = -torch.inf
    total = 0.0
    for b in range(len(users)):
        t, items = teacher[b].topk(4)
        top = set(student[b].topk(4).indices.tolist())
        mixed = [0.3 * math.exp(-(k + 1)) / sum(math.exp(-(j + 1)) for j in range(4))
                 + 0.5 * math.exp(t[k]) / float(t.exp().sum())
                 + 0.1 * ((int(items[k]) in top) + 1e-8) for k in range(4)]
        total += sum(m / sum(mixed) * (softplus(-float(student[b, items[k]])) + softplus(float(student[b, negatives[b]])))
                     for k, m in enumerate(mixed))
    ranking = total / len(users)
    batch_items = torch.unique(torch.cat([strategy.batch_items(first_batch), strategy.candidates[users].reshape(-1)]))
    with torch.no_grad():
        projected = strategy.projector(strategy.teacher_items[batch_items])
        embedded = context.student.representation_tables()[1][batch_items]
    ed = float(((embedded - projected) ** 2).sum(dim=1).mean())
    assert loss == pytest.approx(ranking + 0.2 * ed, rel=1e-4)
