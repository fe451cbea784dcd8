"""Inference as deployed: full-catalogue scores plus top-K (kdbench.evaluate.recommend_topk),
against the roofline, the bare `U @ I.T` + `torch.topk` on the same shapes.

One group per catalogue and batch of users, holding the teacher, the students and the roofline
of each embedding size. extra_info: users/s, and `roofline_fraction`, the roofline's time over
the model's (timed in alternation; 1.0 means the model runs at the machine's limit).
"""

from __future__ import annotations

import pytest

from benchmarks._support import (
    BATCHES, DATASETS, INFERENCE_MODELS, K, ROOFLINE_DIMS, SUMMARY, Roofline, median_seconds, paired_medians,
    sample_users,
)
from kdbench.backbones import count_parameters
from kdbench.evaluate import recommend_topk


def group(dataset: str, batch: int) -> str:
    return f"inference {dataset}, {batch} user{'s' if batch > 1 else ''}"


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
    model_s, roofline_s = paired_medians(lambda: recommend_topk(adapter, users, K), roofline)
    seconds = median_seconds(benchmark) or model_s
    figures = {"model": str(spec), "batch_users": batch, "users_per_s": batch / seconds,
               "roofline_fraction": roofline_s / model_s}
    benchmark.extra_info.update(bench.info(dataset) | figures | {
        "params": count_parameters(model), "dtype": str(dtype), "k": K,
        "paired_model_s": model_s, "paired_roofline_s": roofline_s,
    })
    SUMMARY["inference"].append({"dataset": dataset} | figures)


@pytest.mark.parametrize("dim", ROOFLINE_DIMS, ids=lambda dim: f"d{dim}")
@pytest.mark.parametrize("batch", BATCHES, ids=lambda batch: f"{batch}u")
@pytest.mark.parametrize("dataset", DATASETS)
def test_roofline(benchmark, bench, dataset, batch, dim):
    data = bench.data(dataset)
    roofline = Roofline(data.n_items, dim, batch)
    roofline()
    benchmark.group = group(dataset, batch)
    benchmark(roofline)
    seconds = median_seconds(benchmark)
    benchmark.extra_info.update(bench.info(dataset) | {
        "dim": dim, "batch_users": batch, "k": K, "dtype": str(roofline.items.dtype),
        "users_per_s": batch / seconds if seconds else None,
    })
