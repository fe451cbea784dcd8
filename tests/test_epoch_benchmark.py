"""The training-epoch benchmarks time the model a run trains, not always the cell's student."""

from __future__ import annotations

import pytest

from benchmarks._support import trained_adapter
from conftest import make_context
from kdbench.strategies import STRATEGIES


@pytest.mark.parametrize("name, trained_dim", [("prune-ft", 16), ("svd-ft", 2), ("kd", 2), ("scratch", 2)])
def test_the_epoch_benchmark_trains_what_the_run_trains(ml100k, name, trained_dim):
    context = make_context(ml100k, "BPR:16", "BPR:2")
    strategy = STRATEGIES.get(name)(context)
    strategy.prepare()
    adapter = trained_adapter(strategy, ml100k)
    # prune-ft fine-tunes the pruned 16-dim teacher copy; the others train the 2-dim student
    assert adapter.model.item_embedding.weight.shape[1] == trained_dim
    assert any(parameter.requires_grad for parameter in adapter.model.parameters())
    if trained_dim == 2:
        assert adapter is context.student
    else:
        assert adapter.model is not context.teacher.model  # a copy: the shared teacher stays frozen
        assert adapter.model.item_embedding.weight.requires_grad
