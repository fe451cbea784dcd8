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


def assignment_loss_through_the_bank(strategy, student, teacher, experts, selection):
    """GA as computed before: every expert of every entity by ExpertBank.mix under autograd."""
    logits = selection(teacher)
    gumbel = htd.gumbel_noise(tuple(logits.shape), strategy.generator).to(logits.device)
    alpha = htd.gate_weights(logits, strategy.temperature, gumbel)
    return (teacher - experts.mix(student, alpha)).pow(2).sum()


@pytest.mark.parametrize("temperature", [1.0, 1e-4])  # soft gates (every expert), hard gates (selected experts)
def test_assignment_loss_through_mix_experts_equals_every_expert_under_autograd(ml100k, first_batch, temperature):
    _, strategy = ready(ml100k, "htd")
    strategy.temperature = temperature

    def through(assignment):
        def ga():
            users, _, student, teacher = strategy.batch_entities(first_batch)
            n = len(users)
            return (assignment(student[:n], teacher[:n], strategy.user_experts, strategy.user_selection)
                    + assignment(student[n:], teacher[n:], strategy.item_experts, strategy.item_selection))
        return ga

    check_same_loss_and_gradients(strategy, through(strategy.assignment_loss),
                                  through(lambda *a: assignment_loss_through_the_bank(strategy, *a)),
                                  (strategy.generator,))
    if temperature < 1e-2:  # the hard case does take the selected-experts path
        users, _, _, teacher = strategy.batch_entities(first_batch)
        logits = strategy.user_selection(teacher[:len(users)])
        alpha = htd.gate_weights(logits, temperature, htd.gumbel_noise(tuple(logits.shape), strategy.generator))
        assert 2 * int((alpha != 0).sum()) <= alpha.numel()
