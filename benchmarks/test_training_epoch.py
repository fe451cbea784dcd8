"""One training epoch of every strategy on catalogues of real datasets' shapes, beside scratch's
and beside the roofline of the same work.

The epoch is kdbench.training.loop.fit's (on_epoch_start, then a step on every batch of the loader),
with the RCE-KD reproduction's pairing (BPR:400 -> BPR:20, randomly initialised: an epoch's cost
does not depend on what the weights have learnt), its batch size, training settings and
per-strategy hyperparameters (kdbench/suites/reproduce-rcekd-citeulike.yaml), on a synthetic
catalogue of CiteULike-t's shape (every strategy) and of Amazon-Beauty's (SECOND_SHAPE_STRATEGIES;
benchmarks/_support.py).
prepare() runs once, untimed (its seconds are in extra_info). One timed round, between two of
scratch's: on_epoch_start and the first EPOCH_BATCHES steps (benchmarks/_support.py), the steps
then scaled to the whole epoch (`epoch_estimate_s`): DE's whole epoch takes minutes here.

extra_info: `ratio_to_scratch`, the epoch estimate over the faster of scratch's two; its parts
`epoch_start_s` (resampling with the teacher's or the student's ranking) and `steps_s` (the timed
steps, the loader's batches included); `prepare_s`. `python -m benchmarks.epoch_breakdown` times
whole epochs, part by part. The roofline benchmark: a minimal
plain-PyTorch BPR epoch on the same shape, and `scratch_over_roofline`.
"""

from __future__ import annotations

import pytest

from benchmarks._support import (
    EPOCH, EPOCH_BATCHES, EPOCH_SHAPES, EPOCH_STUDENT, EPOCH_TEACHER, SECOND_SHAPE_STRATEGIES, SUMMARY,
    BPREpochRoofline, benchmark_seconds, epoch_settings, fastest_ratio, time_paired, trained_general_strategies,
)

GENERAL_STRATEGIES = trained_general_strategies()  # svd, prune and quant train nothing: no epoch to time
CASES = [(shape, name) for number, shape in enumerate(EPOCH_SHAPES) for name in GENERAL_STRATEGIES
         if number == 0 or name in SECOND_SHAPE_STRATEGIES]


@pytest.mark.parametrize("shape, strategy", CASES)
def test_training_epoch(benchmark, bench, shape, strategy):
    epoch = bench.training_epoch(shape, strategy, EPOCH_BATCHES)
    scratch = bench.training_epoch(shape, "scratch", EPOCH_BATCHES)
    benchmark.group = f"training epoch {shape}"
    scratch()  # scratch's epoch just before and just after
    benchmark.pedantic(epoch, rounds=1, iterations=1)
    scratch()
    whole = epoch.epoch_estimate()
    ratio = whole / min(scratch.epoch_estimate(-1), scratch.epoch_estimate(-2))
    benchmark.extra_info.update(bench.info(shape) | {
        "strategy": strategy, "epoch": EPOCH, "teacher": str(EPOCH_TEACHER), "student": str(EPOCH_STUDENT),
        "batch_size": epoch_settings(strategy).batch_size, "batches_timed": min(EPOCH_BATCHES, len(epoch.data.train)),
        "batches_per_epoch": len(epoch.data.train), "epoch_estimate_s": whole, "ratio_to_scratch": ratio,
        "epoch_start_s": epoch.start_s[-1], "steps_s": epoch.steps_s[-1], "prepare_s": epoch.prepare_s,
        "trained_parameters": sum(parameter.numel() for parameter in epoch.student.model.parameters()),
    })
    SUMMARY["training epoch"].append({"dataset": shape, "strategy": strategy, "ratio_to_scratch": ratio,
                                      "seconds": whole})


@pytest.mark.parametrize("shape", EPOCH_SHAPES)
def test_epoch_roofline(benchmark, bench, shape):
    data = bench.data(shape)
    roofline = BPREpochRoofline(data, EPOCH_STUDENT.dim, epoch_settings("scratch"))
    scratch = bench.training_epoch(shape, "scratch")  # whole epochs, as the roofline's
    roofline()  # Adam's state
    benchmark.group = f"training epoch {shape}"
    benchmark.pedantic(roofline, rounds=1, iterations=1)
    roofline_s, scratch_s = time_paired(roofline, scratch, budget_s=0.0, min_pairs=2)
    benchmark.extra_info.update(bench.info(shape) | {
        "student": str(EPOCH_STUDENT), "interactions": data.history.nnz,
        "scratch_over_roofline": fastest_ratio(scratch_s, [benchmark_seconds(benchmark, "min"), *roofline_s]),
    })
