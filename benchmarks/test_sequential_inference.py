"""Sequential inference as deployed: a query's input sequence encoded by the model, every item
scored, top-K taken (kdbench.evaluation.evaluator.recommend_topk through the sequential adapter), for a batch
of queries and for one query, against the roofline on the same shapes: the bare `Q @ I.T` +
`torch.topk` of B ready-made d-dimensional query vectors. The gap is the sequence encoder (SASRec's
attention and feed-forward layers over the input, GRU4Rec's recurrence), which the roofline leaves
out. The queries are the test users' inputs under `leave-one-out` (ml-100k; a tiny timestamped
catalogue under --benchmark-smoke). extra_info: queries/s and `roofline_fraction` (the roofline's
fastest call over the model's, timed in alternation in the same test).
"""

from __future__ import annotations

import statistics

import pytest
import torch

from benchmarks._support import (
    BATCHES, K, ML100K, SMOKE, SUMMARY, Roofline, benchmark_seconds, fastest_ratio, median_ratio, time_paired,
)
from kdbench.backbones import build_model, count_parameters
from kdbench.evaluation.evaluator import recommend_topk
from kdbench.families import FAMILIES, BackboneSpec, load_data
from kdbench.families.sequential import LEAVE_ONE_OUT

# The sequential suite's teacher and students (kdbench/suites/sequential.yaml).
SEQUENTIAL_MODELS = tuple(BackboneSpec.parse(spec) for spec in ("SASRec:64:L2H2", "SASRec:16:L1H1", "GRU4Rec:16"))
TINY = "synthetic-tiny-timestamped"
SEQUENTIAL_DATASETS = (TINY,) if SMOKE else (ML100K,)


def write_timestamped(root, n_users: int = 60, n_items: int = 200, per_user: int = 25, seed: int = 0):
    """`root/<TINY>/<TINY>.inter`: each user `per_user` distinct items at increasing timestamps."""
    generator = torch.Generator().manual_seed(seed)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    clock = 0
    for user in range(n_users):
        for item in torch.randperm(n_items, generator=generator)[:per_user].tolist():
            clock += 1
            lines.append(f"u{user}\ti{item}\t{clock}")
    (root / TINY).mkdir(parents=True, exist_ok=True)
    (root / TINY / f"{TINY}.inter").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def sequential_data(tmp_path_factory, torch_threads):
    """dataset name -> its leave-one-out split, loaded once."""
    work = tmp_path_factory.mktemp("sequential-bench")
    loaded = {}

    def get(dataset: str):
        if dataset not in loaded:
            data_path = str(write_timestamped(work)) if dataset == TINY else None
            loaded[dataset] = load_data(dataset, data_path, model="SASRec", protocol=LEAVE_ONE_OUT, work_dir=work)
        return loaded[dataset]

    return get


@pytest.mark.parametrize("spec", SEQUENTIAL_MODELS, ids=str)
@pytest.mark.parametrize("batch", BATCHES, ids=lambda batch: f"{batch}q")
@pytest.mark.parametrize("dataset", SEQUENTIAL_DATASETS)
def test_sequential_inference(benchmark, sequential_data, dataset, batch, spec):
    data = sequential_data(dataset)
    torch.manual_seed(0)
    model = build_model(spec, data).eval()
    adapter, n_queries = FAMILIES["sequential"].cost_adapter(model, data)
    queries = torch.randint(0, n_queries, (batch,), generator=torch.Generator().manual_seed(0))
    benchmark.group = f"sequential inference {data.name}, {batch} quer{'ies' if batch > 1 else 'y'}"
    with torch.no_grad():
        benchmark(recommend_topk, adapter, queries, K)
        roofline = Roofline(data.n_items, spec.dim, batch)
        roofline_s, model_s = time_paired(roofline, lambda: recommend_topk(adapter, queries, K), min_pairs=5)
    figures = {
        "model": str(spec), "batch_queries": batch,
        "queries_per_s": batch / (benchmark_seconds(benchmark) or statistics.median(model_s)),
        "roofline_fraction": fastest_ratio(roofline_s, [benchmark_seconds(benchmark, "min"), *model_s]),
    }
    benchmark.extra_info.update(figures | {
        "dataset": data.name, "n_items": data.n_items, "roofline_fraction_of_medians": median_ratio(roofline_s, model_s),
        "params": count_parameters(model), "max_sequence_length": int(data.config["MAX_ITEM_LIST_LENGTH"]), "k": K,
    })
    SUMMARY["sequential inference"].append({"dataset": data.name} | figures)
