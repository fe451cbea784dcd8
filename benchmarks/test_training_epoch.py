"""One training epoch of every strategy on catalogues of real datasets' shapes, beside scratch's
and beside the roofline of the same work.

The epoch is kdbench.train.fit's (on_epoch_start, then a step on every batch of the loader),
with the RCE-KD reproduction's pairing (BPR:400 -> BPR:20, randomly initialised: an epoch's cost
does not depend on what the weights have learnt), its batch size, training settings and
per-strategy hyperparameters (kdbench/suites/reproduce-rcekd-citeulike.yaml), on synthetic
catalogues of CiteULike-t's and Amazon-Beauty's shapes (benchmarks/_support.py EPOCH_SHAPES).
prepare() runs once, untimed (its seconds are in extra_info). An epoch takes seconds: one timed
round, between two epochs of scratch.

extra_info: `ratio_to_scratch`, the epoch's time over the faster of scratch's two; `epoch_start_s`
and `steps_s`, its two parts (resampling with the teacher's or the student's ranking, then the
optimisation steps, the loader's batches included); `prepare_s`. The roofline benchmark: a minimal
plain-PyTorch BPR epoch on the same shape, and `scratch_over_roofline`.
"""

from __future__ import annotations

import pytest

from benchmarks._support import (
    EPOCH, EPOCH_SHAPES, EPOCH_STUDENT, EPOCH_TEACHER, SUMMARY, BPREpochRoofline, benchmark_seconds, epoch_settings,
    fastest_ratio, time_calls, time_paired,
)
from kdbench.families import FAMILIES, GENERAL
from kdbench.strategies import STRATEGIES

GENERAL_STRATEGIES = [name for name in STRATEGIES.names() if FAMILIES[GENERAL].supports(name)]


@pytest.mark.parametrize("strategy", GENERAL_STRATEGIES)
@pytest.mark.parametrize("shape", EPOCH_SHAPES)
def test_training_epoch(benchmark, bench, shape, strategy):
    epoch = bench.training_epoch(shape, strategy)
    scratch = bench.training_epoch(shape, "scratch")
    benchmark.group = f"training epoch {shape}"
    scratch_s = time_calls(scratch, budget_s=0.0, min_calls=1)  # scratch's epoch just before and just after
    benchmark.pedantic(epoch, rounds=1, iterations=1)
    scratch_s += time_calls(scratch, budget_s=0.0, min_calls=1)
    seconds = benchmark_seconds(benchmark, "min") or epoch.start_s[-1] + epoch.steps_s[-1]
    ratio = seconds / min(scratch_s)
    benchmark.extra_info.update(bench.info(shape) | {
        "strategy": strategy, "epoch": EPOCH, "teacher": str(EPOCH_TEACHER), "student": str(EPOCH_STUDENT),
        "batch_size": epoch_settings(strategy).batch_size, "ratio_to_scratch": ratio,
        "epoch_start_s": epoch.start_s[-1], "steps_s": epoch.steps_s[-1], "prepare_s": epoch.prepare_s,
        "scratch_fastest_s": min(scratch_s),
    })
    SUMMARY["training epoch"].append({"dataset": shape, "strategy": strategy, "ratio_to_scratch": ratio,
                                      "seconds": seconds})


@pytest.mark.parametrize("shape", EPOCH_SHAPES)
def test_epoch_roofline(benchmark, bench, shape):
    data = bench.data(shape)
    roofline = BPREpochRoofline(data, EPOCH_STUDENT.dim, epoch_settings("scratch"))
    scratch = bench.training_epoch(shape, "scratch")
    roofline()  # Adam's state
    benchmark.group = f"training epoch {shape}"
    benchmark.pedantic(roofline, rounds=1, iterations=1)
    roofline_s, scratch_s = time_paired(roofline, scratch, budget_s=0.0, min_pairs=2)
    benchmark.extra_info.update(bench.info(shape) | {
        "student": str(EPOCH_STUDENT), "interactions": data.history.nnz,
        "scratch_over_roofline": fastest_ratio(scratch_s, [benchmark_seconds(benchmark, "min"), *roofline_s]),
    })
