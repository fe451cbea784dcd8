"""Every registered strategy whose epochs draw at random has a distribution test through itself.

The distribution tests (test_cd.py, test_rrd.py, test_rd.py, built on _helpers_sampling.py) catch
a strategy that calls a correct sampler with the wrong numbers. This guard finds the strategies
that sample (their per-epoch state depends on the run's seed) so that a new one cannot go
without such a test: add it to DISTRIBUTION_TESTED once its test exists.
"""

from __future__ import annotations

import pytest
import torch

from _helpers_sampling import fixed_context
from kdbench.strategies import STRATEGIES
from kdbench.training.trajectory import snapshot

# strategy -> the test file holding its distribution tests through prepare() / on_epoch_start()
DISTRIBUTION_TESTED = {"cd": "test_cd.py", "cd-student-guided": "test_cd_student_guided.py", "rd": "test_rd.py", "rrd": "test_rrd.py", "rrd-topk": "test_rrd.py",
                       "bd": "test_bd.py", "dcd": "test_dcd.py", "rce-kd": "test_rce_kd.py", "unkd": "test_unkd.py"}
# where a default does not fit the fixed catalogue's 31 users (DCD's item side draws K users per item),
# or its score tables (no item embeddings for DLLM2Rec's embedding term)
FITS_THE_CATALOGUE = {"dcd": {"K": 10}, "dllm2rec": {"ed_weight": 0.0}}
# past every warm-up phase of the built-in strategies (RD's dynamic weights start after epoch 10)
LATE_EPOCH = 50


def epoch_state(name: str, seed: int, global_seed: int = 0) -> dict[str, torch.Tensor] | None:
    """The plain tensors (not parameters or buffers) a strategy with its default hyperparameters
    holds after prepare() and one late on_epoch_start(), on a fixed catalogue with the run's seed
    `seed` (and the global torch generator seeded with `global_seed`); None where the score-table
    backbones cannot serve it (it needs representations)."""
    cls = STRATEGIES.get(name)
    if cls.needs_representations:
        return None
    context = fixed_context(n_items=1001)  # room for the defaults (RRD: top_n + L = 540 unobserved)
    context.seed = seed  # the same catalogue and tables; only the run's seed (the generators) differs
    if cls.updates_teacher:  # BD trains its own copy of the teacher, as the runner gives it
        for parameter in context.teacher.model.parameters():
            parameter.requires_grad_(True)
    if cls.needs_trajectories:  # HetComp: the runner records its teachers' trajectories; here, snapshots
        members = 1 + len(cls.ensemble_teachers(cls.resolve_hparams({})))
        context.trajectories = (snapshot(context.teacher, context.history, copies=4),) * members
    strategy = cls(context, **FITS_THE_CATALOGUE.get(name, {}))
    strategy.prepare()
    torch.manual_seed(global_seed)  # the global generator, which a strategy's sampling must not use
    strategy.on_epoch_start(LATE_EPOCH)
    return {key: value.clone() for key, value in vars(strategy).items() if isinstance(value, torch.Tensor)}


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_a_strategy_that_samples_has_a_distribution_test(name):
    first, second = epoch_state(name, 1), epoch_state(name, 2)
    if first is None:
        pytest.skip(f"'{name}' needs representations, which the fixed score-table backbones lack")
    samples = any(not torch.equal(first[key], second[key]) for key in first)
    if samples:
        assert name in DISTRIBUTION_TESTED, (
            f"strategy '{name}' draws at random each epoch but has no distribution test through the strategy: "
            "write one with tests/strategies/_helpers_sampling.py and list it in DISTRIBUTION_TESTED"
        )
    else:
        assert name not in DISTRIBUTION_TESTED, f"strategy '{name}' no longer samples: drop it from DISTRIBUTION_TESTED"


@pytest.mark.parametrize("name", sorted(DISTRIBUTION_TESTED))
def test_sampling_follows_the_runs_seed_not_the_global_generator(name):
    """Reproducible from the run's seed alone: the strategy draws from its context's generator."""
    first = epoch_state(name, seed=1, global_seed=0)
    again = epoch_state(name, seed=1, global_seed=123)
    assert first.keys() == again.keys() and all(torch.equal(first[key], again[key]) for key in first)
