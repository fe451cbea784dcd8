"""KD (softmax cross-entropy over the student's top-K candidates)."""

from __future__ import annotations

import math

import pytest
import torch

from _helpers_response_feature import (
    check_gradients,
    check_integration,
    check_not_counted,
    check_rejects_bad_hparams,
    ready,
)
from _helpers_sampling import fixed_context
from kdbench.strategies.kd import KD, kd_loss


def test_kd_loss_matches_hand_computed():
    student = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    tau = 2.0
    # row 1: p_t = softmax([1, 0]); log p_s = log softmax([0.5, 1.5])
    pt = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]
    log_z = math.log(math.exp(0.5) + math.exp(1.5))
    row1 = -(pt[0] * (0.5 - log_z) + pt[1] * (1.5 - log_z))
    # row 2: the student is uniform, so CE = log 2 whatever the teacher says
    row2 = math.log(2)
    assert kd_loss(student, teacher, tau).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)


def test_kd_loss_counts_weight_rows_as_repeated_rows():
    student = torch.tensor([[1.0, 3.0], [0.5, -1.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    repeated = kd_loss(student[[0, 0, 0, 1]], teacher[[0, 0, 0, 1]], 1.0)
    weighted = kd_loss(student, teacher, 1.0, counts=torch.tensor([3, 1]))
    assert weighted.item() == pytest.approx(repeated.item(), rel=1e-6)


def test_candidates_are_the_students_top_k_and_teacher_logits_match(ml100k):
    context, strategy = ready(ml100k, "kd", K=7)
    users = torch.arange(1, 20)
    with torch.no_grad():
        full = context.student.full_scores(users)
        full[:, 0] = -torch.inf
        expected = torch.topk(full, 7, dim=1).values
        picked = full.gather(1, strategy.candidates[users])
        teacher = context.teacher.score(users, strategy.candidates[users])
    assert torch.allclose(picked, expected)
    assert (strategy.candidates[users] != 0).all()
    assert torch.allclose(strategy.teacher_logits[users], teacher, atol=1e-5)


def test_candidates_are_repicked_each_epoch(ml100k):
    context, strategy = ready(ml100k, "kd")
    first = strategy.candidates.clone()
    with torch.no_grad():
        for p in context.student.model.parameters():
            p.normal_()
    strategy.on_epoch_start(2)
    assert not torch.equal(first, strategy.candidates)


def test_loss_equals_mean_over_batch_rows(ml100k, first_batch):
    context, strategy = ready(ml100k, "kd", tau=3.0)
    users = first_batch[context.uid_field]
    candidates = strategy.candidates[users]
    row_wise = kd_loss(context.student.score(users, candidates), context.teacher.score(users, candidates), 3.0)
    assert strategy.loss(first_batch).item() == pytest.approx(row_wise.item(), rel=1e-5)


def test_gradient_reaches_student_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "kd")
    check_gradients(context, strategy, first_batch)


def test_no_training_only_parameters(ml100k, first_batch):
    check_not_counted(ml100k, "kd", first_batch)


def test_rejects_unknown_negative_and_zero_hparams(ml100k):
    check_rejects_bad_hparams(ml100k, "kd", must_be_positive=("K", "tau"))


@pytest.mark.parametrize("teacher", ["BPR:32", "ENMF:8"])
def test_integration_on_any_backbone(ml100k, first_batch, teacher):
    """ENMF has no representation getter in kdbench: KD needs only scores."""
    context, strategy = ready(ml100k, "kd", teacher=teacher)
    check_integration(strategy, first_batch)


def test_loss_before_on_epoch_start_is_an_error(ml100k, first_batch):
    from conftest import make_context
    from kdbench.strategies.kd import KD

    with pytest.raises(RuntimeError, match="on_epoch_start"):
        KD(make_context(ml100k)).loss(first_batch)


def test_loss_weights_each_distinct_user_by_its_rows_in_the_batch():
    context = fixed_context()
    strategy = KD(context, K=5, tau=4.0)
    strategy.on_epoch_start(1)

    def loss(users: list[int]) -> float:
        return strategy.loss({context.uid_field: torch.tensor(users)}).item()

    assert loss([1, 1, 1, 2]) == pytest.approx((3 * loss([1]) + loss([2])) / 4, rel=1e-6)
    assert loss([1]) != pytest.approx(loss([2]), rel=1e-2)  # so the weighting shows
