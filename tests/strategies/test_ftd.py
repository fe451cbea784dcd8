"""FTD: the full-topology loss (Gram form against the pairwise form), the batch's entities, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from _helpers_response_feature import check_gradients, check_integration, check_not_counted, ready
from kdbench.strategies.ftd import grouped_topology_loss, topology_loss


def test_topology_loss_matches_hand_computed():
    # student: orthogonal (cos 0); teacher: 45 degrees apart (cos 1/sqrt 2); diagonals agree.
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    teacher = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    expected = 2 * (0 - 1 / math.sqrt(2)) ** 2
    assert topology_loss(student, teacher).item() == pytest.approx(expected)
    assert grouped_topology_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_gram_form_equals_the_pairwise_form():
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(300, 5, generator=gen), torch.randn(300, 64, generator=gen)
    assert grouped_topology_loss(student, teacher).item() == pytest.approx(topology_loss(student, teacher).item(),
                                                                           rel=1e-5)


def test_grouped_form_sums_within_group_pairs_only():
    gen = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(200, 5, generator=gen), torch.randn(200, 32, generator=gen)
    groups = torch.randint(0, 7, (200,), generator=gen)
    same_group = groups.unsqueeze(0) == groups.unsqueeze(1)
    literal = topology_loss(student, teacher, mask=same_group)
    assert grouped_topology_loss(student, teacher, groups, 7).item() == pytest.approx(literal.item(), rel=1e-5)


def test_loss_is_the_topology_of_the_batchs_distinct_entities_over_rows(ml100k, first_batch):
    context, strategy = ready(ml100k, "ftd")
    users = first_batch[context.uid_field]
    items = torch.cat([first_batch[context.iid_field], first_batch[context.neg_iid_field]]).unique()
    student_users, student_items = context.student.representation_tables()
    teacher_users, teacher_items = context.teacher.representation_tables()
    student = torch.cat([student_users[users.unique()], student_items[items]])
    teacher = torch.cat([teacher_users[users.unique()], teacher_items[items]])
    expected = topology_loss(student.double(), teacher.double()) / len(users)
    assert strategy.loss(first_batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_reaches_student_never_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "ftd")
    assert strategy.family == "topology" and strategy.weight == pytest.approx(0.001)
    check_gradients(context, strategy, first_batch)
    check_not_counted(ml100k, "ftd", first_batch)


@pytest.mark.parametrize("student", ["BPR:8", "LightGCN:8"])
def test_integration(ml100k, first_batch, student):
    _, strategy = ready(ml100k, "ftd", student=student)
    check_integration(strategy, first_batch)
