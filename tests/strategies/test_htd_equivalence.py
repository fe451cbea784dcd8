"""HTD's positive-pair sum, computed with the dropped pairs zeroed, gives the former loss and gradients:
the reference below selects the kept pairs with a boolean index (the code before)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _helpers_equivalence import check_same_loss_and_gradients
from _helpers_response_feature import ready
from kdbench.strategies import htd
from kdbench.strategies.ftd import grouped_topology_loss
from kdbench.strategies.htd import prototype_loss


def reference_positive_pair_loss(student, teacher, groups):
    a = F.normalize(student, dim=1)
    with torch.no_grad():
        b = F.normalize(teacher, dim=1)
    order = torch.argsort(groups, stable=True)
    counts = torch.unique_consecutive(groups[order], return_counts=True)[1].tolist()
    total = student.new_zeros(())
    for members in torch.split(order, counts):
        step = max(1, htd.PAIR_CELLS // len(members))
        for start in range(0, len(members), step):
            rows = members[start:start + step]
            teacher_sim = b[rows] @ b[members].T
            keep = teacher_sim > 0
            total = total + (a[rows] @ a[members].T - teacher_sim)[keep].pow(2).sum()
    return total


def reference_loss(strategy, batch):
    users, items, student, teacher = strategy.batch_entities(batch)
    n_users, k = len(users), strategy.hparams["K"]
    with torch.no_grad():
        groups = torch.cat([strategy.user_selection(teacher[:n_users]).argmax(dim=1),
                            strategy.item_selection(teacher[n_users:]).argmax(dim=1) + k])
    entity = (reference_positive_pair_loss(student, teacher, groups) if strategy.hparams["positive_pairs"]
              else grouped_topology_loss(student, teacher, groups, 2 * k))
    td = entity + prototype_loss(student, teacher, groups)
    ga = (strategy.assignment_loss(student[:n_users], teacher[:n_users], strategy.user_experts,
                                   strategy.user_selection)
          + strategy.assignment_loss(student[n_users:], teacher[n_users:], strategy.item_experts,
                                     strategy.item_selection))
    alpha = strategy.hparams["alpha"]
    return (alpha * td + (1 - alpha) * ga) / strategy.batch_users(batch).numel()


@pytest.mark.parametrize("hparams", [{}, {"K": 3, "alpha": 0.9}, {"positive_pairs": 0}])
def test_loss_and_gradients_equal_the_former_computation(ml100k, first_batch, hparams, monkeypatch):
    _, strategy = ready(ml100k, "htd", **hparams)
    check_same_loss_and_gradients(strategy, lambda: strategy.loss(first_batch),
                                  lambda: reference_loss(strategy, first_batch), (strategy.generator,))
    monkeypatch.setattr(htd, "PAIR_CELLS", 1000)  # several row blocks per group
    check_same_loss_and_gradients(strategy, lambda: strategy.loss(first_batch),
                                  lambda: reference_loss(strategy, first_batch), (strategy.generator,))
