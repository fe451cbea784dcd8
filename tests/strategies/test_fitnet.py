"""FitNet (hint regression of student representations onto the teacher's, linear projectors)."""

from __future__ import annotations

import pytest
import torch

from _helpers_response_feature import (
    check_gradients,
    check_integration,
    check_not_counted,
    check_rejects_bad_hparams,
    ready,
)
from conftest import make_context
from kdbench.errors import KdbenchError
from kdbench.strategies.fitnet import FitNet, hint_loss


def test_hint_loss_matches_hand_computed():
    projected = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    target = torch.tensor([[0.0, 0.0], [3.0, 1.0]])
    # ||(1, 2)||^2 = 5 and ||(-3, -2)||^2 = 13
    assert hint_loss(projected, target).item() == pytest.approx(5 + 13)
    assert hint_loss(projected, target, counts=torch.tensor([2, 1])).item() == pytest.approx(2 * 5 + 13)


def test_loss_is_mean_over_rows_of_user_term_plus_average_item_term(ml100k, first_batch):
    context, strategy = ready(ml100k, "fitnet")
    users = first_batch[context.uid_field]
    pos, neg = first_batch[context.iid_field], first_batch[context.neg_iid_field]
    student_users, student_items = context.student.representation_tables()
    teacher_users, teacher_items = context.teacher.representation_tables()

    def per_row(projector, student, teacher, ids):
        return (projector(student[ids]) - teacher[ids]).pow(2).sum(dim=1)

    rows = per_row(strategy.user_projector, student_users, teacher_users, users) + 0.5 * (
        per_row(strategy.item_projector, student_items, teacher_items, pos)
        + per_row(strategy.item_projector, student_items, teacher_items, neg)
    )
    assert strategy.loss(first_batch).item() == pytest.approx(rows.mean().item(), rel=1e-5)


def test_projectors_map_student_dims_to_teacher_dims(ml100k):
    _, strategy = ready(ml100k, "fitnet", teacher="BPR:32", student="BPR:8")
    for projector in (strategy.user_projector, strategy.item_projector):
        assert projector.weight.shape == (32, 8) and projector.bias is None


def test_teacher_tables_are_constant_copies(ml100k):
    context, strategy = ready(ml100k, "fitnet")
    users, items = context.teacher.representation_tables()
    assert torch.equal(strategy.teacher_users, users) and torch.equal(strategy.teacher_items, items)
    assert not strategy.teacher_users.requires_grad and not strategy.teacher_items.requires_grad
    assert strategy.teacher_users.data_ptr() != users.data_ptr()
    assert "teacher_users" not in strategy.state_dict()


def test_gradient_reaches_student_and_projectors_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "fitnet")
    check_gradients(context, strategy, first_batch)


def test_projectors_are_not_counted_in_the_student(ml100k, first_batch):
    check_not_counted(ml100k, "fitnet", first_batch)


def test_rejects_unknown_and_negative_hparams(ml100k):
    check_rejects_bad_hparams(ml100k, "fitnet")


def test_backbone_without_representations_fails_early(ml100k):
    with pytest.raises(KdbenchError, match="strategy 'fitnet' needs user/item representations"):
        FitNet(make_context(ml100k, teacher="ENMF:8"))
    with pytest.raises(KdbenchError, match="strategy 'fitnet' needs user/item representations"):
        FitNet(make_context(ml100k, student="ENMF:8"))


@pytest.mark.parametrize("student", ["BPR:8", "LightGCN:8"])
def test_integration(ml100k, first_batch, student):
    _, strategy = ready(ml100k, "fitnet", student=student)
    check_integration(strategy, first_batch)


def test_loss_before_prepare_is_an_error(ml100k, first_batch):
    with pytest.raises(RuntimeError, match="called before prepare"):
        FitNet(make_context(ml100k)).loss(first_batch)


# -- fitnet-mlp: woriazzc/KDs' MLP projector ------------------------------------------------------
def test_mlp_projector_is_the_mean_of_its_experts_mlps():
    from kdbench.strategies.fitnet import MLPProjector

    torch.manual_seed(0)
    projector = MLPProjector(4, 6, 10, dropout=0.3, n_experts=3).eval()
    x = torch.randn(7, 4)
    experts = [torch.relu(x @ projector.w1[m] + projector.b1[m]) @ projector.w2[m] + projector.b2[m] for m in range(3)]
    assert torch.allclose(projector(x), torch.stack(experts).mean(0), atol=1e-6)


def test_mlp_projector_drops_out_only_while_training():
    from kdbench.strategies.fitnet import MLPProjector

    torch.manual_seed(0)
    projector = MLPProjector(4, 6, 10, dropout=0.5)
    x = torch.randn(7, 4)
    assert not torch.allclose(projector(x), projector(x))  # fresh masks each call
    projector.eval()
    assert torch.equal(projector(x), projector(x))


def test_fitnet_mlp_projectors_have_kds_shape(ml100k):
    _, strategy = ready(ml100k, "fitnet-mlp", teacher="BPR:32", student="BPR:8")
    assert strategy.family == "feature" and strategy.weight == pytest.approx(0.05)
    assert strategy.hparams["dropout"] == pytest.approx(0.2)
    for projector in (strategy.user_projector, strategy.item_projector):
        assert projector.w1.shape == (1, 8, 160) and projector.w2.shape == (1, 160, 32)  # hidden 5 x 32


def test_fitnet_mlp_loss_is_fitnets_with_its_projector(ml100k, first_batch):
    context, strategy = ready(ml100k, "fitnet-mlp", dropout=0.0)
    users = first_batch[context.uid_field]
    pos, neg = first_batch[context.iid_field], first_batch[context.neg_iid_field]
    student_users, student_items = context.student.representation_tables()
    teacher_users, teacher_items = context.teacher.representation_tables()

    def per_row(projector, student, teacher, ids):
        return (projector(student[ids]) - teacher[ids]).pow(2).sum(dim=1)

    rows = per_row(strategy.user_projector, student_users, teacher_users, users) + 0.5 * (
        per_row(strategy.item_projector, student_items, teacher_items, pos)
        + per_row(strategy.item_projector, student_items, teacher_items, neg)
    )
    assert strategy.loss(first_batch).item() == pytest.approx(rows.mean().item(), rel=1e-5)


def test_fitnet_mlp_gradient_reaches_student_and_projectors_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "fitnet-mlp")
    check_gradients(context, strategy, first_batch)
    check_not_counted(ml100k, "fitnet-mlp", first_batch)
    check_rejects_bad_hparams(ml100k, "fitnet-mlp", ("hidden_ratio",))
