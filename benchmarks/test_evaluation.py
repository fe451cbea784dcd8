"""A validation pass as training makes it every epoch: kdbench.evaluate.full_ranking of the student
(BPR:20) over the validation loader, every item scored for every validated user, seen items masked,
RecBole's Recall and NDCG per user.

On a large catalogue this pass, not the training step, is most of a cell's time (CiteULike's
25,181 items: about 75% of a scratch epoch). extra_info: `users_per_s`, and `collector_ratio`, the
time of the same pass through RecBole's Collector, which builds a dense users x items indicator
matrix for the top-k hits, over kdbench's (`topk_hits`); both timed in alternation, fastest calls.
"""

from __future__ import annotations

from unittest import mock

import pytest

from benchmarks._support import DATASETS, ML100K, STUDENT, benchmark_seconds, fastest_ratio, run_sized, time_paired
from kdbench import evaluate


@pytest.mark.parametrize("dataset", DATASETS)
def test_validation_pass(benchmark, bench, dataset):
    data = bench.data(dataset)
    model = bench.frozen_model(dataset, STUDENT)

    def kdbench_pass():
        return evaluate.full_ranking(model, data.valid, data.config)

    def collector_pass():
        with mock.patch.object(evaluate, "needs_topk_only", lambda config: False):
            return evaluate.full_ranking(model, data.valid, data.config)

    large = dataset != ML100K  # the synthetic catalogue's pass takes seconds: one round, one pair
    benchmark.group = f"validation pass {dataset}"
    result = run_sized(benchmark, kdbench_pass, trial=not large)
    ours, theirs = time_paired(kdbench_pass, collector_pass, min_pairs=1 if large else 5,
                               budget_s=0.0 if large else 0.5)
    users = len(result.user_ids)
    benchmark.extra_info.update(bench.info(dataset) | {
        "model": str(STUDENT), "validated_users": users,
        "users_per_s": users / (benchmark_seconds(benchmark) or min(ours)),
        "collector_ratio": fastest_ratio(theirs, ours),
    })
