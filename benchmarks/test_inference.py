"""Inference as deployed: full-catalogue scores plus top-K (kdbench.evaluation.evaluator.recommend_topk),
against the roofline, the bare `U @ I.T` + `torch.topk` on the same shapes.

One group per catalogue and batch of users, holding the roofline of each embedding size, the
teacher and the students. extra_info of each model: users/s, and `roofline_fraction`, the
roofline's fastest call over the model's, both timed in the same test, in alternation (1.0: the
model runs at the machine's limit); `roofline_fraction_of_medians`, the same from medians.
"""

from __future__ import annotations

import statistics

import pytest

from benchmarks._support import (
    BATCHES, DATASETS, INFERENCE_MODELS, K, ROOFLINE_DIMS, SUMMARY, Roofline, benchmark_seconds, fastest_ratio,
    median_ratio, sample_users, time_paired,
)
from kdbench.backbones import count_parameters
from kdbench.evaluation.evaluator import recommend_topk


def group(dataset: str, batch: int) -> str:
    return f"inference {dataset}, {batch} user{'s' if batch > 1 else ''}"


@pytest.mark.parametrize("dim", ROOFLINE_DIMS, ids=lambda dim: f"d{dim}")
@pytest.mark.parametrize("batch", BATCHES, ids=lambda batch: f"{batch}u")
@pytest.mark.parametrize("dataset", DATASETS)
def test_roofline(benchmark, bench, dataset, batch, dim):
    roofline = Roofline(bench.data(dataset).n_items, dim, batch)
    roofline()
    benchmark.group = group(dataset, batch)
    benchmark(roofline)
    seconds = benchmark_seconds(benchmark)
    benchmark.extra_info.update(bench.info(dataset) | {
        "dim": dim, "batch_users": batch, "k": K, "dtype": str(roofline.items.dtype),
        "users_per_s": batch / seconds if seconds else None,
    })


@pytest.mark.parametrize("spec", INFERENCE_MODELS, ids=str)
@pytest.mark.parametrize("batch", BATCHES, ids=lambda batch: f"{batch}u")
@pytest.mark.parametrize("dataset", DATASETS)
def test_recommend_topk(benchmark, bench, dataset, batch, spec):
    data = bench.data(dataset)
    model = bench.frozen_model(dataset, spec)
    adapter = bench.adapter(dataset, model)
    users = sample_users(data.n_users, batch)
    recommend_topk(adapter, users, K)  # LightGCN propagates once and caches the result, as deployed
    benchmark.group = group(dataset, batch)
    benchmark(recommend_topk, adapter, users, K)

    dtype = model.item_embedding.weight.dtype
    roofline = Roofline(data.n_items, spec.dim, batch, dtype)
    roofline_s, model_s = time_paired(roofline, lambda: recommend_topk(adapter, users, K), min_pairs=5)
    figures = {
        "model": str(spec), "batch_users": batch,
        "users_per_s": batch / (benchmark_seconds(benchmark) or statistics.median(model_s)),
        "roofline_fraction": fastest_ratio(roofline_s, [benchmark_seconds(benchmark, "min"), *model_s]),
    }
    benchmark.extra_info.update(bench.info(dataset) | figures | {
        "roofline_fraction_of_medians": median_ratio(roofline_s, model_s),
        "params": count_parameters(model), "dtype": str(dtype), "k": K,
    })
    SUMMARY["inference"].append({"dataset": dataset} | figures)
