"""list_scores: sparse products with the values and gradients of gathered embedding rows, and every
strategy that scores its lists with it keeps its loss and gradients (the pre-optimisation
computation, BackboneAdapter.score, kept here as the reference)."""

from __future__ import annotations

import importlib

import pytest
import torch

from conftest import make_context
from kdbench.strategies import STRATEGIES
from kdbench.strategies._list_scores import list_scores


def gathered_scores(adapter, rows, columns, by_item=False):
    """The computation list_scores replaced: BackboneAdapter.score (by_item: pairs flattened)."""
    if not by_item:
        return adapter.score(rows, columns)
    flat = adapter.score(columns.reshape(-1), rows.repeat_interleave(columns.shape[1]).unsqueeze(1))
    return flat.view(columns.shape)


def values_and_gradients(model, compute):
    for param in model.parameters():
        param.grad = None
    out = compute()
    weights = torch.linspace(-1.0, 2.0, out.numel()).view_as(out)
    (out * weights).sum().backward()
    return out.detach().clone(), [p.grad.clone() if p.grad is not None else None for p in model.parameters()]


@pytest.mark.parametrize("student", ["BPR:8", "LightGCN:8"])
@pytest.mark.parametrize("by_item", [False, True], ids=["users", "items"])
def test_values_and_gradients_equal_gathered_rows_with_repeats_in_any_order(ml100k, student, by_item):
    adapter = make_context(ml100k, student=student).student
    generator = torch.Generator().manual_seed(0)
    n_rows, n_cols = (ml100k.n_items, ml100k.n_users) if by_item else (ml100k.n_users, ml100k.n_items)
    rows = torch.randperm(n_rows - 1, generator=generator)[:40] + 1
    columns = torch.randint(1, n_cols, (40, 30), generator=generator)
    columns[:, 5] = columns[:, 2]  # a repeat in every row
    with adapter.one_forward_per_step():
        fast, fast_grads = values_and_gradients(adapter.model, lambda: list_scores(adapter, rows, columns, by_item))
    with adapter.one_forward_per_step():
        slow, slow_grads = values_and_gradients(adapter.model, lambda: gathered_scores(adapter, rows, columns, by_item))
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-7)
    for mine, theirs in zip(fast_grads, slow_grads):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-8)
            assert theirs.abs().sum() > 0 or mine.abs().sum() == 0


def test_teacher_side_needs_no_gradient(bpr_context):
    rows, columns = torch.tensor([1, 2]), torch.tensor([[3, 4], [5, 3]])
    with torch.no_grad():
        scores = list_scores(bpr_context.teacher, rows, columns)
    assert not scores.requires_grad
    assert torch.allclose(scores, bpr_context.teacher.score(rows, columns))


# Every strategy whose loss scores lists with list_scores, with settings small enough for ml-100k.
LIST_STRATEGIES = {
    "rrd": {"K": 10, "L": 20, "top_n": 100}, "rrd-topk": {"K": 10, "L": 20, "top_n": 100},
    "dcd": {"K": 10, "top_n": 50, "item_weight": 0.5}, "rce-kd": {"K": 10, "L": 10, "mxK": 40},
    "kd": {"K": 20}, "rd": {"K": 10, "dynamic_start_epoch": 1}, "unkd": {"n_distill": 5, "top_n": 100},
    "cd": {"N": 200, "n_distill": 5}, "cd-student-guided": {"N": 200, "n_distill": 5},
}


@pytest.mark.parametrize("name", sorted(LIST_STRATEGIES))
def test_strategy_loss_and_gradients_are_unchanged(ml100k, first_batch, monkeypatch, name):
    strategy = STRATEGIES.get(name)(make_context(ml100k), **LIST_STRATEGIES[name])
    strategy.prepare()
    strategy.on_epoch_start(2)
    student = strategy.context.student
    fast = values_and_gradients(student.model, lambda: strategy.loss(first_batch))
    for module in {type(strategy).__module__, *[cls.__module__ for cls in type(strategy).__mro__]}:
        if module.startswith("kdbench.strategies.") and hasattr(importlib.import_module(module), "list_scores"):
            monkeypatch.setattr(importlib.import_module(module), "list_scores", gathered_scores)
    slow = values_and_gradients(student.model, lambda: strategy.loss(first_batch))
    assert torch.allclose(fast[0], slow[0], rtol=1e-5)
    for mine, theirs in zip(fast[1], slow[1]):
        assert torch.allclose(mine, theirs, rtol=1e-4, atol=1e-9)
