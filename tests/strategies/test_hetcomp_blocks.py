"""HetComp's block-wise partition sum (_exp_sum.py) gives the dense computation's loss and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from _helpers_equivalence import check_same_loss_and_gradients
from kdbench.strategies import _exp_sum
from kdbench.strategies.hetcomp import HetComp, hetcomp_loss
from tests.conftest import make_context
from tests.strategies.test_hetcomp import _trajectory


def test_exp_sum_matches_hand_computed_values_and_gradients(monkeypatch):
    monkeypatch.setattr(_exp_sum, "BLOCK", 2)  # two blocks for three users
    users = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]], requires_grad=True)
    items = torch.tensor([[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]], requires_grad=True)
    history = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]], dtype=np.float32))
    total = _exp_sum.unobserved_exp_sum(users, items, history, np.arange(3), clamp=2.5)
    # item 0 is padding; user 0 sees items 2, 3 (scores 0, -1); user 1: 1, 2, 3 (0, 2, 2); user 2: item 1 (3 -> 2.5)
    e = math.exp
    assert torch.allclose(total, torch.tensor([e(0) + e(-1), e(0) + 2 * e(2), e(2.5)], dtype=torch.float32))
    total.sum().backward()
    # d/dp_u = sum_i w_ui q_i; user 2's only term is clamped: no gradient
    assert torch.allclose(users.grad, torch.tensor([[-e(-1), 1 + e(-1)], [1 - e(2), 2 * e(2)], [0.0, 0.0]]))
    assert torch.allclose(items.grad[0], torch.zeros(2)) and torch.allclose(items.grad[1], torch.tensor([0.0, 2.0]))


def _dense_loss(strategy, batch):
    """HetComp's loss through full_scores and a dense mask (the code before _exp_sum.py)."""
    users = torch.unique(strategy.batch_users(batch))
    scores = strategy.context.student.full_scores(users)
    unobserved = torch.from_numpy(strategy.context.history[users.numpy()].toarray() == 0)
    unobserved[:, 0] = False
    return hetcomp_loss(scores, unobserved, strategy.observed[users], strategy.top[users], strategy.listwise)


@pytest.mark.parametrize("student", ["BPR:8", "LightGCN:8"])
@pytest.mark.parametrize("listwise", [False, True])
def test_block_wise_loss_and_gradients_equal_the_dense_ones(ml100k, first_batch, monkeypatch, student, listwise):
    monkeypatch.setattr(_exp_sum, "BLOCK", 100)  # several blocks
    context = make_context(ml100k, student=student)
    context.trajectories = (_trajectory(ml100k.n_users, ml100k.n_items, 3, seed=1),)
    strategy = HetComp(context, K=20)
    strategy.prepare()
    strategy.listwise = listwise

    def within_a_step(loss):  # as train.py: whole-graph students propagate once per step
        def run():
            with context.student.one_forward_per_step():
                return loss(strategy, first_batch)
        return run

    loss = check_same_loss_and_gradients(strategy, within_a_step(HetComp.loss), within_a_step(_dense_loss))
    assert torch.isfinite(loss) and loss > 0


def test_a_student_without_dot_product_scores_takes_the_dense_path(ml100k, first_batch):
    context = make_context(ml100k, student="NeuMF:8")
    assert not context.student.card.dot_product
    context.trajectories = (_trajectory(ml100k.n_users, ml100k.n_items, 3, seed=1),)
    strategy = HetComp(context, K=20)
    strategy.prepare()
    loss = check_same_loss_and_gradients(strategy, lambda: strategy.loss(first_batch),
                                         lambda: _dense_loss(strategy, first_batch))
    assert torch.isfinite(loss) and loss > 0
