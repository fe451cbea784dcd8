"""Teacher knowledge: each strategy's one-off prepare() and its per-epoch on_epoch_start().

prepare() runs once per run (the teacher's top-N lists, representation tables); each round
times a freshly built strategy, as the runner builds it. on_epoch_start() is the resampling paid
every epoch, timed at the first epoch and at one past every warm-up phase, on ml-100k (the
training-epoch benchmarks time it within whole epochs on catalogues of real datasets' shapes).
On the large catalogue prepare() runs one round: a round can take tens of seconds. Groups:
`prepare <dataset>` and `epoch start <dataset>, epoch <e>`, every registered strategy in each.
"""

from __future__ import annotations

import pytest

from benchmarks._support import DATASETS, EPOCH_START_CASES, ML100K, STUDENT, TEACHER, run_sized
from kdbench.strategies import STRATEGIES


@pytest.mark.parametrize("strategy", STRATEGIES.names())
@pytest.mark.parametrize("dataset", DATASETS)
def test_prepare(benchmark, bench, dataset, strategy):
    built = []

    def fresh_strategy():
        built.append(bench.new_strategy(dataset, strategy))
        return (built[-1],), {}

    benchmark.group = f"prepare {dataset}"
    rounds, warmup = (5, 1) if dataset == ML100K else (1, 0)
    benchmark.pedantic(lambda fresh: fresh.prepare(), setup=fresh_strategy, rounds=rounds, warmup_rounds=warmup)
    bench.keep_prepared(dataset, strategy, built[-1])
    benchmark.extra_info.update(bench.info(dataset) | {
        "strategy": strategy, "teacher": str(TEACHER), "student": str(STUDENT),
    })


@pytest.mark.parametrize("strategy", STRATEGIES.names())
@pytest.mark.parametrize("dataset, epoch", EPOCH_START_CASES,
                         ids=lambda pair: pair if isinstance(pair, str) else f"epoch{pair}")
def test_epoch_start(benchmark, bench, dataset, epoch, strategy):
    prepared = bench.prepared(dataset, strategy)
    benchmark.group = f"epoch start {dataset}, epoch {epoch}"
    run_sized(benchmark, lambda: prepared.on_epoch_start(epoch), trial=dataset == ML100K)
    bench.started(dataset, strategy, epoch)
    benchmark.extra_info.update(bench.info(dataset) | {
        "strategy": strategy, "epoch": epoch, "teacher": str(TEACHER), "student": str(STUDENT),
    })
