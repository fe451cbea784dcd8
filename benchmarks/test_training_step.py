"""One optimisation step of the student (BPR:20, teacher BPR:200) for every registered strategy.

The step is kdbench.training.loop.fit's: base loss [+ weight * KD loss] inside one_forward_per_step,
backward, Adam, on the same training batch for every strategy, with prepare() and
on_epoch_start() done beforehand, untimed. One group per catalogue and epoch, `scratch` in
each: the rows compare as the KD overhead. extra_info: `ratio_to_scratch`, the step's fastest
call over scratch's, both timed in the same test; `ratio_to_scratch_of_medians`, the same from
medians of the two timed in alternation.
"""

from __future__ import annotations

import pytest

from benchmarks._support import (
    DATASET_EPOCHS, DATASETS, STUDENT, SUMMARY, TEACHER, benchmark_seconds, fastest_ratio, median_ratio, run_sized,
    time_calls, time_paired,
)
from kdbench.strategies import STRATEGIES


@pytest.mark.parametrize("strategy", STRATEGIES.names())
# Latest epoch first: test_knowledge.py leaves every strategy there, so its (possibly slow)
# resampling is not redone. The large catalogue times the later epoch only.
@pytest.mark.parametrize("dataset, epoch", sorted(DATASET_EPOCHS, key=lambda pair: (DATASETS.index(pair[0]), -pair[1])),
                         ids=lambda pair: pair if isinstance(pair, str) else f"epoch{pair}")
def test_training_step(benchmark, bench, dataset, epoch, strategy):
    bench.start_epoch(dataset, strategy, epoch)
    bench.start_epoch(dataset, "scratch", epoch)
    step = bench.training_step(dataset, strategy)
    scratch = bench.training_step(dataset, "scratch")
    benchmark.group = f"training step {dataset}, epoch {epoch}"
    run_sized(benchmark, step)  # its untimed trial step also builds the optimiser's state

    # scratch, timed here and now (the process's state, e.g. its allocator's, is the step's):
    # in alternation with the step, then at least 20 calls more for a slow step's sake
    step_s, scratch_s = time_paired(step, scratch)
    of_medians = median_ratio(step_s, scratch_s)
    scratch_s += time_calls(scratch, budget_s=0.2, min_calls=20)
    ratio = fastest_ratio([benchmark_seconds(benchmark, "min"), *step_s], scratch_s)
    benchmark.extra_info.update(bench.info(dataset) | {
        "strategy": strategy, "epoch": epoch, "teacher": str(TEACHER), "student": str(STUDENT),
        "batch_interactions": len(step.batch), "ratio_to_scratch": ratio,
        "ratio_to_scratch_of_medians": of_medians,
        "scratch_fastest_s": min(scratch_s),
    })
    SUMMARY["training step"].append({"dataset": dataset, "epoch": epoch, "strategy": strategy,
                                     "ratio_to_scratch": ratio})
