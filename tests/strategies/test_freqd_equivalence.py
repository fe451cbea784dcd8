"""FreqD's filter applied to the projector's hidden units gives the former loss and gradients: the
reference below projects every entity the filtered rows reach, then filters (the code before)."""

from __future__ import annotations

import pytest
import torch

from _helpers_equivalence import check_same_loss_and_gradients
from _helpers_response_feature import ready
from kdbench.strategies.freqd import apply_filter, dropped_rows, freq_distance


def reference_side(strategy, id_groups, graph, student_table, teacher_table, projector):
    h = strategy.hparams
    dropped = [dropped_rows(ids, graph, h["keep_prob"], strategy._generator) for ids in id_groups]
    needed, where = torch.unique(torch.cat([*id_groups, *(column for _, column, _ in dropped)]),
                                 return_inverse=True)
    teacher, student = teacher_table[needed], projector(student_table[needed])
    at_self = where[: sum(len(ids) for ids in id_groups)].split([len(ids) for ids in id_groups])
    at_column = where[len(torch.cat(id_groups)):].split([len(column) for _, column, _ in dropped])
    total = 0.0
    for at_s, at_c, (row, _, value) in zip(at_self, at_column, dropped):
        total = total + freq_distance(apply_filter(teacher, at_s, row, at_c, value, h["alpha"]),
                                      apply_filter(student, at_s, row, at_c, value, h["alpha"]), h["normalize"])
    return total / len(id_groups)


def reference_loss(strategy, batch):
    ctx = strategy.context
    users = strategy.batch_users(batch)
    student_users, student_items = ctx.student.representation_tables()
    fields = [field for field in (ctx.iid_field, ctx.neg_iid_field) if field in batch.interaction]
    item_groups = [batch[field].unique() for field in fields]
    total = reference_side(strategy, [users.unique()], strategy.user_graph, student_users, strategy.teacher_users,
                           strategy.user_projector)
    total = total + reference_side(strategy, item_groups, strategy.item_graph, student_items,
                                   strategy.teacher_items, strategy.item_projector)
    return total / users.numel()


@pytest.mark.parametrize("hparams", [{}, {"normalize": False, "alpha": 0.8, "keep_prob": 0.3, "num_experts": 2},
                                     {"dropout": 0.0, "keep_prob": 1.0, "K": 3}])
def test_loss_and_gradients_equal_the_former_computation(ml100k, first_batch, hparams):
    torch.manual_seed(0)
    _, strategy = ready(ml100k, "freqd", **hparams)
    strategy.train()
    for _ in range(2):  # two batches in a row: the generators move on identically
        loss = check_same_loss_and_gradients(strategy, lambda: strategy.loss(first_batch),
                                             lambda: reference_loss(strategy, first_batch), (strategy._generator,))
        assert loss.item() > 0
