"""One optimisation step of the student (BPR:20, teacher BPR:200) for every registered strategy.

The step is kdbench.train.fit's: base loss [+ weight * KD loss] inside one_forward_per_step,
backward, Adam, on the same training batch for every strategy, with prepare() and
on_epoch_start() done beforehand, untimed. One group per catalogue and epoch, `scratch` in
each: the rows compare as the KD overhead. extra_info: `ratio_to_scratch`, the step's time over
scratch's, timed in alternation with it.
"""

from __future__ import annotations

import pytest

from benchmarks._support import DATASETS, EPOCHS, STUDENT, SUMMARY, TEACHER, median_seconds, paired_medians
from kdbench.strategies import STRATEGIES


@pytest.mark.parametrize("strategy", STRATEGIES.names())
@pytest.mark.parametrize("epoch", EPOCHS, ids=lambda epoch: f"epoch{epoch}")
@pytest.mark.parametrize("dataset", DATASETS)
def test_training_step(benchmark, bench, dataset, epoch, strategy):
    step = bench.training_step(dataset, strategy)
    scratch = bench.training_step(dataset, "scratch")
    step.start_epoch(epoch)
    scratch.start_epoch(epoch)
    step()  # warm-up: the optimiser's state, first-call allocations
    benchmark.group = f"training step {dataset}, epoch {epoch}"
    benchmark(step)

    step_s, scratch_s = paired_medians(step, scratch)
    ratio = step_s / scratch_s
    benchmark.extra_info.update(bench.info(dataset) | {
        "strategy": strategy, "epoch": epoch, "teacher": str(TEACHER), "student": str(STUDENT),
        "batch_interactions": len(step.batch), "ratio_to_scratch": ratio,
        "paired_step_s": step_s, "paired_scratch_s": scratch_s,
        "step_s": median_seconds(benchmark) or step_s,
    })
    SUMMARY["training step"].append({"dataset": dataset, "epoch": epoch, "strategy": strategy,
                                     "ratio_to_scratch": ratio})
