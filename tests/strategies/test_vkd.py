"""VkD (orthogonal projectors onto standardised teacher representations)."""

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
from kdbench.strategies import STRATEGIES
from kdbench.strategies.vkd import VkD, orthogonal_projector, standardise


def test_standardise_matches_hand_computed():
    # real rows (1, 2) and (3, 6): mean (2, 4), biased var (1, 4) -> std (1, 2) (eps 0 here)
    table = torch.tensor([[100.0, -100.0], [1.0, 2.0], [3.0, 6.0]])
    out = standardise(table, eps=0.0)
    assert out[1:].tolist() == [[-1.0, -1.0], [1.0, 1.0]]
    assert out[0].tolist() == [98.0, -52.0]  # the padding row is standardised with the real rows' statistics
    # the default eps is BatchNorm's: (x - mu) / sqrt(var + 1e-5)
    assert standardise(table)[2, 0].item() == pytest.approx(1 / (1 + 1e-5) ** 0.5)


def test_projector_has_orthonormal_columns_and_keeps_dot_products():
    torch.manual_seed(0)
    projector = orthogonal_projector(3, 7)
    w = projector.weight
    assert w.shape == (7, 3)
    assert torch.allclose(w.T @ w, torch.eye(3), atol=1e-5)
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.allclose((projector(a) * projector(b)).sum(1), (a * b).sum(1), atol=1e-5)


def test_loss_is_fitnets_form_on_standardised_teacher_tables(ml100k, first_batch):
    context, strategy = ready(ml100k, "vkd")
    users = first_batch[context.uid_field]
    pos, neg = first_batch[context.iid_field], first_batch[context.neg_iid_field]
    student_users, student_items = context.student.representation_tables()
    teacher_users, teacher_items = context.teacher.representation_tables()
    # standardisation by hand, over the real rows (padding row 0 left out of the statistics)
    def by_hand(table):
        rows = table[1:]
        return (table - rows.mean(0)) / (rows.var(0, unbiased=False) + 1e-5).sqrt()

    t_users, t_items = by_hand(teacher_users), by_hand(teacher_items)
    assert t_users[1:].mean(0).abs().max() < 1e-4 and (t_users[1:].std(0, unbiased=False) - 1).abs().max() < 1e-2  # eps

    def per_row(projector, student, teacher, ids):
        w = projector.weight
        return (student[ids] @ w.T - teacher[ids]).pow(2).sum(dim=1)

    rows = per_row(strategy.user_projector, student_users, t_users, users) + 0.5 * (
        per_row(strategy.item_projector, student_items, t_items, pos)
        + per_row(strategy.item_projector, student_items, t_items, neg)
    )
    assert strategy.loss(first_batch).item() == pytest.approx(rows.mean().item(), rel=1e-5)


def test_defaults_and_registration(ml100k):
    cls = STRATEGIES.get("vkd")
    assert cls is VkD and cls.family == "feature" and cls.variant_of is None
    assert cls.defaults == {"weight": 5e-4}
    assert set(cls.tuning_space()) == {"weight"}


def test_gradient_reaches_student_and_projectors_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "vkd")
    check_gradients(context, strategy, first_batch)
    originals = [p for name, p in strategy.named_parameters() if "original" in name]
    assert len(originals) == 2 and all(p.grad.abs().sum() > 0 for p in originals)


def test_projectors_stay_orthogonal_and_the_loss_falls_after_steps(ml100k, first_batch):
    context, strategy = ready(ml100k, "vkd", teacher="BPR:32", student="BPR:8")
    params = list(context.student.model.parameters()) + list(strategy.parameters())
    optimiser = torch.optim.Adam(params, lr=0.05)
    first = None
    for _ in range(30):
        optimiser.zero_grad()
        loss = strategy.loss(first_batch)
        first = loss.item() if first is None else first
        loss.backward()
        optimiser.step()
    assert strategy.loss(first_batch).item() < 0.9 * first
    for projector in (strategy.user_projector, strategy.item_projector):
        w = projector.weight.detach()
        assert torch.allclose(w.T @ w, torch.eye(8), atol=1e-4)
    assert not any(p.requires_grad for p in context.teacher.model.parameters())


def test_projectors_are_not_counted_in_the_student(ml100k, first_batch):
    check_not_counted(ml100k, "vkd", first_batch)


def test_rejects_unknown_and_negative_hparams(ml100k):
    check_rejects_bad_hparams(ml100k, "vkd")


def test_backbone_without_representations_fails_early(ml100k):
    with pytest.raises(KdbenchError, match="strategy 'vkd' needs user/item representations"):
        VkD(make_context(ml100k, teacher="ENMF:8"))


@pytest.mark.parametrize("student", ["BPR:8", "LightGCN:8"])
def test_integration(ml100k, first_batch, student):
    _, strategy = ready(ml100k, "vkd", student=student)
    check_integration(strategy, first_batch)


def test_student_wider_than_teacher_gets_orthonormal_rows(ml100k, first_batch):
    _, strategy = ready(ml100k, "vkd", teacher="BPR:4", student="BPR:8")
    w = strategy.user_projector.weight
    assert w.shape == (4, 8) and torch.allclose(w @ w.T, torch.eye(4), atol=1e-5)
    check_integration(strategy, first_batch)


def test_loss_before_prepare_is_an_error(ml100k, first_batch):
    with pytest.raises(RuntimeError, match="called before prepare"):
        VkD(make_context(ml100k)).loss(first_batch)
