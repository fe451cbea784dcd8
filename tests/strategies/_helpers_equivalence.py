"""An optimised strategy against a reference re-implementation of its former computation: the same
loss value and the same gradients on a fixed batch, with every random generator replayed."""

from __future__ import annotations

from typing import Callable

import torch


def _loss_and_gradients(strategy, compute: Callable[[], torch.Tensor]):
    ctx = strategy.context
    params = [p for p in ctx.student.model.parameters() if p.requires_grad] + list(strategy.parameters())
    for p in params:
        p.grad = None
    with ctx.student.one_forward_per_step():
        loss = compute()
    loss.backward()
    return loss.detach(), [None if p.grad is None else p.grad.clone() for p in params]


def check_same_loss_and_gradients(strategy, new: Callable[[], torch.Tensor], old: Callable[[], torch.Tensor],
                                  generators: tuple[torch.Generator, ...] = ()) -> torch.Tensor:
    """new() and old() give the same loss (rtol 1e-6) and gradients w.r.t. the student's and the
    strategy's parameters (allclose, atol 1e-6 of the largest entry), each started from the same state
    of the global generator and of `generators`. Returns the loss."""
    global_state, states = torch.get_rng_state(), [g.get_state() for g in generators]
    loss, grads = _loss_and_gradients(strategy, new)
    torch.set_rng_state(global_state)
    for g, state in zip(generators, states):
        g.set_state(state)
    expected, expected_grads = _loss_and_gradients(strategy, old)
    assert torch.allclose(loss, expected, rtol=1e-6, atol=0), (loss.item(), expected.item())
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    for got, want in zip(grads, expected_grads):
        assert (got is None) == (want is None)
        if got is not None:
            scale = want.abs().max().item()
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-6 * scale), (got - want).abs().max().item()
    return loss
