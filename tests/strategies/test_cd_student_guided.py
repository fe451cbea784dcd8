"""CD with student-guided sampling (woriazzc/KDs' `cd_strategy: "student guide"`), a variant of `cd`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from _helpers_response_feature import check_gradients, ready
from _helpers_sampling import (
    as_cells, assert_follows, by_group, fixed_context, lookup, over_epochs, teacher_ranks, unobserved_counts,
    user_groups,
)
from conftest import make_context
from kdbench.strategies import STRATEGIES
from kdbench.strategies.base import method_names
from kdbench.strategies.cd import CDStudentGuided, cd_loss
from kdbench.strategies.knowledge import teacher_top_n
from test_cd import cd_stated_pmf

NAME = "cd-student-guided"


def top_sets(adapter, history, n: int) -> list[set[int]]:
    """Each user's n best unobserved items by `adapter`'s scores, as sets."""
    with torch.no_grad():
        return [set(row.tolist()) for row in teacher_top_n(adapter, history, n)]


def test_samples_come_from_the_students_top_n_not_the_teachers(ml100k):
    context, strategy = ready(ml100k, NAME, N=20, n_distill=5)
    students = top_sets(context.student, context.history, 20)
    teachers = top_sets(context.teacher, context.history, 20)
    history = context.history.tocsr()
    outside_teacher = 0
    for user in range(1, context.n_users):
        row = set(strategy.items[user].tolist())
        assert len(row) == 5 and row <= students[user]
        assert not row & set(history[user].indices.tolist())
        outside_teacher += len(row - teachers[user])
    assert outside_teacher > 0.5 * 5 * (context.n_users - 1)  # an untrained student's top-20 is not the teacher's


def test_the_list_follows_the_student_as_it_trains(ml100k):
    context, strategy = ready(ml100k, NAME, N=10, n_distill=3)
    items = context.student.model.item_embedding.weight
    favoured = torch.arange(100, 110)
    with torch.no_grad():  # make items 100..109 every user's best unobserved items
        users = context.student.model.user_embedding.weight
        items[favoured] = users.mean(dim=0) * 1e3
        users.copy_(users.mean(dim=0).expand_as(users))
    strategy.on_epoch_start(2)
    history = context.history.tocsr()
    for user in range(1, context.n_users, 37):
        if not set(favoured.tolist()) & set(history[user].indices.tolist()):
            assert set(strategy.items[user].tolist()) <= set(favoured.tolist())


def test_soft_labels_are_the_teachers_scores_and_the_loss_is_cds(ml100k, first_batch):
    context, strategy = ready(ml100k, NAME, n_distill=4, t1=3.0, t2=1.0)
    users = first_batch[context.uid_field]
    items = strategy.items[users]
    with torch.no_grad():
        assert torch.allclose(strategy.teacher_scores[users], context.teacher.score(users, items), atol=1e-5)
    expected = cd_loss(context.student.score(users, items), context.teacher.score(users, items), 3.0, 1.0)
    assert strategy.loss(first_batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_scoring_the_student_leaves_it_training_and_gradients_reach_it_not_the_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, NAME)
    assert context.student.model.training
    check_gradients(context, strategy, first_batch)


def test_it_is_a_variant_of_cd_outside_all():
    cls = STRATEGIES.get(NAME)
    assert cls.variant_of == "cd" and cls.defaults == STRATEGIES.get("cd").defaults
    assert NAME in STRATEGIES.names() and NAME not in method_names() and "cd" in method_names()


def test_epoch_start_before_prepare_is_an_error(ml100k):
    strategy = STRATEGIES.get(NAME)(make_context(ml100k, "BPR:32", "BPR:8", 0))
    with pytest.raises(RuntimeError, match="before prepare"):
        strategy.on_epoch_start(1)


def test_strategy_samples_the_students_ranks_with_cds_rank_distribution():
    """prepare + 300 epochs on fixed score tables: ranked by the STUDENT's scores among the user's
    unobserved items, each sampled item's rank is the better of two draws with p(r) ~ exp(-r / (N T)),
    truncated to the unobserved ranks: CD's distribution, on the other model's list."""
    context = fixed_context()
    n_top, temperature = 20, 0.25
    strategy = CDStudentGuided(context, N=n_top, T=temperature, n_distill=1)
    strategy.prepare()
    drawn = over_epochs(strategy, range(1, 301), lambda s: s.items)
    ranks = lookup(teacher_ranks(dataclasses.replace(context, teacher=context.student)), drawn)
    limits = np.minimum(unobserved_counts(context), n_top)
    pmfs = {limit: as_cells(cd_stated_pmf(n_top, temperature, limit)) for limit in (15, 20)}
    assert_follows(by_group(ranks, user_groups(context, limits)), pmfs)
    teacher_side = lookup(teacher_ranks(context), drawn)
    assert (teacher_side >= n_top).mean() > 0.2  # the tables are independent: many fall outside the teacher's top-N
