"""A validation pass as training makes it every epoch: kdbench.evaluation.evaluator.full_ranking of the student
(BPR:20) over the validation loader, every item scored for every validated user, seen items masked,
RecBole's Recall and NDCG per user.

On a large catalogue this pass, not the training step, is most of a cell's time (CiteULike's
25,181 items: about 75% of a scratch epoch). Besides the usual shapes it runs on synthetic
catalogues of CiteULike-t's (5,219 users x 25,181 items) and Amazon-Beauty's (22,363 x 12,101)
shapes. extra_info: `users_per_s`; `roofline_fraction`, the time of the pass's roofline (the
plain `U @ I.T`, mask and `torch.topk` over the same users in the same batches, `ValidationRoofline`)
over the pass's (target: >= 0.8); and on the smaller shapes `collector_ratio`, the time of the same
pass through RecBole's Collector, which builds a dense users x items indicator matrix for the top-k
hits, over kdbench's. Timed in alternation, fastest calls.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch

from benchmarks._support import (DATASETS, ML100K, REAL_SHAPES, STUDENT, SUMMARY, benchmark_seconds, fastest_ratio,
                                 run_sized, time_paired)
from kdbench.evaluation import evaluator
from kdbench.data.loading import TOPK


class ValidationRoofline:
    """What a validation pass cannot beat: per evaluation batch, the users' rows of the embedding
    table times the item table, the padding item and the users' training items set to -inf, and
    `torch.topk`; the batches (users, masked pairs) read from the loader beforehand."""

    def __init__(self, model, loader, k: int = max(TOPK)):
        uid = loader._dataset.uid_field
        self.users = model.user_embedding.weight.detach()
        self.items = model.item_embedding.weight.detach()
        self.batches = [(interaction[uid], history) for interaction, history, _, _ in loader]
        self.k = k

    def __call__(self) -> list[torch.Tensor]:
        with torch.no_grad():
            ranked = []
            for users, history in self.batches:
                scores = self.users[users] @ self.items.T
                scores[:, 0] = -np.inf
                scores[history] = -np.inf
                ranked.append(torch.topk(scores, self.k, dim=-1).indices)
            return ranked


@pytest.mark.parametrize("dataset", DATASETS + tuple(REAL_SHAPES))
def test_validation_pass(benchmark, bench, dataset):
    data = bench.data(dataset)
    model = bench.frozen_model(dataset, STUDENT)
    roofline = ValidationRoofline(model, data.valid)

    def kdbench_pass():
        return evaluator.full_ranking(model, data.valid, data.config)

    def collector_pass():
        with mock.patch.object(evaluator, "needs_topk_only", lambda config: False):
            return evaluator.full_ranking(model, data.valid, data.config)

    large = dataset != ML100K  # the synthetic catalogue's pass takes seconds: one round, few pairs
    benchmark.group = f"validation pass {dataset}"
    result = run_sized(benchmark, kdbench_pass, trial=not large)
    passes, bare = time_paired(kdbench_pass, roofline, min_pairs=3 if large else 5, budget_s=0.0 if large else 0.5)
    users = len(result.user_ids)
    info = {"model": str(STUDENT), "validated_users": users,
            "users_per_s": users / (benchmark_seconds(benchmark) or min(passes)),
            "roofline_fraction": fastest_ratio(bare, passes)}
    if dataset not in REAL_SHAPES:
        ours, theirs = time_paired(kdbench_pass, collector_pass, min_pairs=1 if large else 5,
                                   budget_s=0.0 if large else 0.5)
        info["collector_ratio"] = fastest_ratio(theirs, ours)
    benchmark.extra_info.update(bench.info(dataset) | info)
    SUMMARY["validation pass"].append({"dataset": dataset, "seconds": min(passes), **info})
