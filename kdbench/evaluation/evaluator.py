"""Quality (RecBole's full-ranking metrics, per user) and cost (size, throughput, latency).

Quality goes through RecBole's own Collector and metric classes, so NDCG/Recall are computed
exactly as RecBole computes them (`topk_hits` builds the Collector's top-k tensor without its dense
indicator matrix); kdbench only keeps the per-user values RecBole averages away (needed for the
paired significance test).
"""

from __future__ import annotations

import statistics
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench.backbones import (BackboneAdapter, count_parameters, model_size_bytes,
                               reset_inference_cache)
from kdbench.data.loading import TOPK
from kdbench.families import family_of_model


@dataclass
class RankingResult:
    """Mean metrics (`ndcg@10` ...) and the per-user values behind them, users in loader order;
    `topk_items` the users' top-K item ids (users x max(topk), best first: `kdbench.evaluation.beyond`)."""

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray] = field(repr=False)
    user_ids: np.ndarray = field(repr=False)
    topk_items: np.ndarray | None = field(default=None, repr=False)


@dataclass
class EvaluationBatches:
    """An evaluation loader's batches, read once: (interaction, history index, positive rows,
    positive items) as RecBole's loader yields them, in its order and batch sizes.

    RecBole's collate rebuilds the history and positive indices user by user on every pass (an
    eighth of a validation pass on CiteULike's shape); an evaluation loader's contents never change
    after the split, so training reads them once and reuses them for every validation.
    `positives` keys each distinct (row, item) positive pair row * n_items + item, sorted, with rows
    numbered over the whole pass (`positive_keys`)."""

    step: int
    batches: list[tuple[Any, Any, torch.Tensor, torch.Tensor]] = field(repr=False)
    positives: torch.Tensor = field(repr=False)


_BATCHES: "weakref.WeakKeyDictionary[Any, EvaluationBatches]" = weakref.WeakKeyDictionary()


def evaluation_batches(loader) -> EvaluationBatches:
    """The batches of `loader`, read from it on first use and kept while the loader lives."""
    cached = _BATCHES.get(loader)
    if cached is not None and cached.step == loader.step:
        return cached
    batches, rows, items, offset = [], [], [], 0
    for interaction, history_index, positive_u, positive_i in loader:
        batches.append((interaction, history_index, positive_u, positive_i))
        rows.append(positive_u.to(torch.int64) + offset)
        items.append(positive_i.to(torch.int64))
        offset += len(interaction)
    empty = torch.empty(0, dtype=torch.int64)
    positives = positive_keys(torch.cat(rows) if rows else empty, torch.cat(items) if items else empty,
                              loader._dataset.item_num)
    cached = _BATCHES[loader] = EvaluationBatches(loader.step, batches, positives)
    return cached


@torch.no_grad()
def full_ranking(model: nn.Module, loader, config) -> RankingResult:
    """Score every item for every evaluated user, mask seen items, and compute RecBole's metrics.

    A sequential model scores each row's own input sequence; RecBole's sequential loader masks
    nothing (`history_index` is None), so only the padding item is removed. The cost is the
    roofline's (scores, mask, `torch.topk`: benchmarks/test_validation_roofline.py) plus one hit
    lookup over all users' top-K lists."""
    from recbole.evaluator import Collector
    from recbole.evaluator.register import metrics_dict

    model.eval()
    reset_inference_cache(model)
    adapter = evaluation_adapter(model, loader._dataset.uid_field, loader._dataset.iid_field)
    collector = Collector(config)
    depth = max(collector.topk)
    fast_topk = needs_topk_only(config)
    read = evaluation_batches(loader)
    shared = _model_storages(model)
    user_ids, ranked = [], []
    for interaction, history_index, positive_u, positive_i in read.batches:
        interaction = interaction.to(config["device"])
        scores = adapter.interaction_scores(interaction)
        if not _writable(scores, shared):
            scores = scores.clone()
        scores[:, 0] = -np.inf  # padding item
        if history_index is not None:
            scores[history_index] = -np.inf
        if not fast_topk:
            collector.eval_batch_collect(scores, interaction, positive_u, positive_i)
        ranked.append(torch.topk(scores, depth, dim=-1).indices)
        user_ids.append(interaction[adapter.uid_field].cpu().numpy())
    topk_idx = torch.cat(ranked) if ranked else torch.empty((0, depth), dtype=torch.int64)
    if fast_topk and ranked:
        hits = ranked_hits(topk_idx, read.positives.to(topk_idx.device), loader._dataset.item_num)
        collector.data_struct.update_tensor("rec.topk", hits)
    struct = collector.get_data_struct()
    metrics: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {}
    for name in config["metrics"]:
        metric = metrics_dict[name.lower()](config)
        pos_index, pos_len = metric.used_info(struct)
        values = metric.metric_info(pos_index, pos_len)  # users x max(topk): metric@1..@K
        for k in TOPK:
            key = f"{name.lower()}@{k}"
            per_user[key] = values[:, k - 1].astype(np.float64)
            metrics[key] = float(per_user[key].mean())
    model.train()
    return RankingResult(metrics, per_user, np.concatenate(user_ids) if user_ids else np.empty(0, int),
                         topk_idx.cpu().numpy())


def _model_storages(model: nn.Module) -> set[int]:
    """Addresses of the memory behind the model's parameters, buffers and cached tensors."""
    tensors = [*model.parameters(), *model.buffers(),
               *(value for value in vars(model).values() if isinstance(value, torch.Tensor))]
    # Sparse tensors (LightGCN's CSR adjacency) have no storage of their own, and no scores can be a view of one.
    return {tensor.untyped_storage().data_ptr() for tensor in tensors if tensor.layout == torch.strided}


def _writable(scores: torch.Tensor, shared: set[int]) -> bool:
    """Whether the seen items may be masked in `scores` itself: a contiguous tensor (no element
    aliased twice) whose memory is not the model's. A model's fresh score matrix (a matmul) is;
    copying it anyway cost a quarter of a CiteULike-sized pass."""
    return scores.is_contiguous() and scores.untyped_storage().data_ptr() not in shared


def needs_topk_only(config) -> bool:
    """Whether every configured metric reads only RecBole's `rec.topk` (Recall, NDCG, Hit, MRR,
    Precision, MAP: kdbench's own), which `topk_hits` builds; others go through RecBole's Collector."""
    from recbole.evaluator.register import metric_information

    return {info for name in config["metrics"] for info in metric_information[name.lower()]} == {"rec.topk"}


def topk_hits(scores: torch.Tensor, positive_u: torch.Tensor, positive_i: torch.Tensor, k: int) -> torch.Tensor:
    """RecBole's `rec.topk` for one batch: row r holds, for each of its top-`k` items, 1 if it is a
    positive of r, then r's number of distinct positives (int64, users x (k + 1)).

    The same tensor RecBole's `Collector.eval_batch_collect` builds, with the same `torch.topk`, but
    looked up in the positive (row, item) pairs instead of a dense users x items indicator matrix:
    that matrix's allocation and row sums were a third of a CiteULike validation pass (25,181 items).
    """
    _, topk_idx = torch.topk(scores, k, dim=-1)
    n_items = scores.shape[1]
    return ranked_hits(topk_idx, positive_keys(positive_u, positive_i, n_items), n_items)


def positive_keys(positive_u: torch.Tensor, positive_i: torch.Tensor, n_items: int) -> torch.Tensor:
    """The distinct positive (row, item) pairs, each keyed row * n_items + item, sorted."""
    return torch.unique(positive_u.to(torch.int64) * n_items + positive_i.to(torch.int64))


def ranked_hits(topk_idx: torch.Tensor, positives: torch.Tensor, n_items: int) -> torch.Tensor:
    """`topk_hits` of rows whose top-k item ids are given (rows x k): each (row, item) key binary-
    searched among the sorted `positive_keys` (4x faster than `torch.isin` for a whole pass)."""
    n_rows = topk_idx.shape[0]
    wanted = torch.arange(n_rows, device=topk_idx.device).unsqueeze(1) * n_items + topk_idx
    if positives.numel():
        found = positives[torch.searchsorted(positives, wanted).clamp_(max=positives.numel() - 1)]
        hits = (found == wanted).to(torch.int64)
    else:
        hits = torch.zeros_like(wanted)
    counts = torch.bincount(positives // n_items, minlength=n_rows).unsqueeze(1)
    return torch.cat((hits, counts), dim=1)


def evaluation_adapter(model: nn.Module, uid_field: str, iid_field: str) -> BackboneAdapter:
    """The adapter that scores an evaluation loader's batches for `model`'s family."""
    return family_of_model(model).evaluation_adapter(model, uid_field, iid_field)


@dataclass
class CostResult:
    params: int
    size_bytes: int
    throughput_users_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    batch_users: int

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@torch.no_grad()
def recommend_topk(adapter: BackboneAdapter, users: torch.Tensor, k: int = max(TOPK)) -> torch.Tensor:
    """Deployed inference: full-catalogue scores, then the top-K item ids."""
    return torch.topk(adapter.full_scores(users), k, dim=1).indices


@torch.no_grad()
def inference_cost(
    model: nn.Module,
    uid_field: str,
    iid_field: str,
    n_users: int,
    batch_users: int = 256,
    repeats: int = 7,
    latency_samples: int = 200,
    seed: int = 0,
    adapter: BackboneAdapter | None = None,
) -> CostResult:
    """Parameters, bytes, batched top-K throughput (median of repeats after warm-up), single-user latency.

    Throughput: users/s for full-catalogue scoring plus top-20 on batches of `batch_users` users.
    Latency: one user at a time, p50/p99 over `latency_samples` calls. A sequential model is given
    its `adapter` over a query table (the test users' inputs, `n_users` queries): then "users" are
    queries, each a forward pass over its input sequence.
    """
    model.eval()
    reset_inference_cache(model)
    adapter = adapter or BackboneAdapter(model, uid_field, iid_field)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    batch = torch.randint(1, n_users, (batch_users,), generator=generator).to(device)
    singles = torch.randint(1, n_users, (latency_samples,), generator=generator).to(device)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):  # warm-up (also fills LightGCN's propagated-embedding cache, as deployed)
        recommend_topk(adapter, batch)
    synchronize()
    batch_seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        recommend_topk(adapter, batch)
        synchronize()
        batch_seconds.append(time.perf_counter() - start)
    latencies = []
    for user in singles:
        start = time.perf_counter()
        recommend_topk(adapter, user.view(1))
        synchronize()
        latencies.append((time.perf_counter() - start) * 1e3)
    model.train()
    return CostResult(
        params=count_parameters(model),
        size_bytes=model_size_bytes(model),
        throughput_users_per_s=batch_users / statistics.median(batch_seconds),
        latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p99_ms=float(np.percentile(latencies, 99)),
        batch_users=batch_users,
    )
