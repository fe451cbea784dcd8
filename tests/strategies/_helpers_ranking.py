"""Checks shared by the ranking-distillation tests (RD, RRD)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from kdbench.strategies.base import DistillationStrategy


def training_items(history: sp.csr_matrix, user: int) -> set[int]:
    return set(history.indices[history.indptr[user] : history.indptr[user + 1]].tolist())


def any_training_pair(history: sp.csr_matrix, items: torch.Tensor) -> bool:
    """items (n_users, M): whether any row holds one of that user's training items."""
    rows = np.repeat(np.arange(items.shape[0]), items.shape[1])
    cols = items.reshape(-1).cpu().numpy().copy()
    return bool(np.asarray(history[rows, cols]).ravel().any())


def assert_is_teacher_top_k(context, items: torch.Tensor) -> None:
    """items (n_users, K) are, per user, the teacher's K best-scored items outside training, in
    order (compared by score, since the order of exactly tied scores is arbitrary)."""
    with torch.no_grad():
        scores = context.teacher.full_scores(torch.arange(context.n_users)).clone()
    scores[:, 0] = -torch.inf
    coo = context.history.tocoo()
    scores[torch.from_numpy(coo.row).long(), torch.from_numpy(coo.col).long()] = -torch.inf
    best = scores.topk(items.shape[1], dim=1).values
    assert torch.equal(scores.gather(1, items), best)
    assert torch.isfinite(best).all()


def unfreeze_teacher(strategy: DistillationStrategy) -> list[torch.nn.Parameter]:
    """Let the teacher's parameters require grad, so that a leak into the teacher would show."""
    params = list(strategy.context.teacher.model.parameters())
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    return params


def assert_gradients_reach_student_only(strategy: DistillationStrategy, batch) -> None:
    """The KD loss is finite, trains the student, leaves the teacher without gradient, and the
    teacher is no part of the strategy's modules or parameters."""
    teacher_params = unfreeze_teacher(strategy)
    student_params = list(strategy.context.student.model.parameters())
    for p in student_params:
        p.grad = None
    loss = strategy.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student_params)
    assert all(p.grad is None for p in teacher_params)
    teacher_ids = {id(p) for p in teacher_params}
    assert not teacher_ids & {id(p) for p in strategy.parameters()}
    assert all(m is not strategy.context.teacher.model for m in strategy.modules())
