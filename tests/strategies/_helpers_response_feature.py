"""Checks shared by the response (KD, CD) and feature (FitNet, DE) strategy tests."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import make_context
from kdbench.backbones import count_parameters
from kdbench.errors import KdbenchError
from kdbench.strategies import STRATEGIES


def ready(data, name: str, teacher: str = "BPR:32", student: str = "BPR:8", seed: int = 0, **hparams):
    """A strategy on a fresh context, prepared and at the start of epoch 1."""
    context = make_context(data, teacher, student, seed)
    strategy = STRATEGIES.get(name)(context, **hparams)
    strategy.prepare()
    strategy.on_epoch_start(1)
    return context, strategy


def check_integration(strategy, batch) -> torch.Tensor:
    """prepare()/on_epoch_start(1) already ran: the loss is a finite scalar that backpropagates."""
    with strategy.context.student.one_forward_per_step():
        loss = strategy.loss(batch)
    assert loss.dim() == 0 and math.isfinite(loss.item())
    loss.backward()
    return loss


def check_gradients(context, strategy, batch) -> None:
    """The loss reaches the student and the strategy's own modules, never the teacher."""
    check_integration(strategy, batch)
    student_grads = [p.grad for p in context.student.model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in student_grads)
    for name, p in strategy.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in strategy.parameters()) or not list(strategy.parameters())
    for p in context.teacher.model.parameters():
        assert not p.requires_grad and p.grad is None
    teacher_ids = {id(p) for p in context.teacher.model.parameters()}
    assert not teacher_ids & {id(p) for p in strategy.parameters()}
    assert not teacher_ids & {id(t) for t in strategy.state_dict().values()}


def check_not_counted(data, name: str, batch, **hparams) -> None:
    """Training-only modules do not change the deployed student's parameter count."""
    context = make_context(data)
    before = count_parameters(context.student.model)
    strategy = STRATEGIES.get(name)(context, **hparams)
    strategy.prepare()
    strategy.on_epoch_start(1)
    strategy.loss(batch).backward()
    assert count_parameters(context.student.model) == before
    student_ids = {id(p) for p in context.student.model.parameters()}
    assert not student_ids & {id(p) for p in strategy.parameters()}


def check_rejects_bad_hparams(data, name: str, must_be_positive: tuple[str, ...] = ()) -> None:
    cls = STRATEGIES.get(name)
    context = make_context(data)
    with pytest.raises(KdbenchError, match="unknown hyperparameter 'no_such_knob'"):
        cls(context, no_such_knob=1)
    for key in cls.defaults:
        with pytest.raises(KdbenchError, match=f"'{key}'.*>= 0"):
            cls(context, **{key: -1})
    for key in must_be_positive:
        with pytest.raises(KdbenchError, match=f"'{key}'.*> 0"):
            cls.resolve_hparams({key: 0})
