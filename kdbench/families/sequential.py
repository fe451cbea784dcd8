"""The sequential family: SASRec, GRU4Rec; RecBole's leave-one-out-by-time data, queries, and the
adapter that scores them.

A *query* is one prediction point: a user's items in time order up to (not including) the item to
predict, truncated to the last `loading.MAX_SEQUENCE_LENGTH` (the model's input). RecBole's sequential
dataset makes one training row per prediction point of each user's training part (`u: <i1> | i2`,
`u: <i1, i2> | i3`, ...; `SequentialDataset.data_augmentation`); kdbench numbers these rows
`query_id` 1..Q (0 is a padding query, as RecBole's user 0) and keeps their inputs in a
`QueryTable`. The strategies then see queries exactly where the general family has users:

- the batch's `query_id` column is the context's `uid_field`, the number of queries is `n_users`;
- `history` (queries x items) holds each query's own input items, never its target or anything
  after it, so teacher knowledge (`teacher_top_n`, ranks, samples outside the history) computed
  from it uses nothing beyond the prediction point;
- `SequentialAdapter.full_scores(queries)` is RecBole's `full_sort_predict` on the queries' inputs,
  `score(queries, items)` the same dot products for a few items, and `representation_tables()` the
  sequence representation (RecBole's `forward`, computed for the queries indexed) and the item
  embeddings, so existing response, ranking and feature KD code runs unchanged.

Protocol (`LEAVE_ONE_OUT`, RecBole's standard for sequential models): interactions ordered by
timestamp per user (`order: TO`), the last one is the test target, the one before it the validation
target, the rest training (`split: {LS: valid_and_test}`); full ranking over all items; RecBole's
sequential evaluator masks nothing (a user may consume an item again), kdbench only removes the
padding item 0; Recall/NDCG@10/20, selection on validation NDCG@10; models are trained with the
cross-entropy over the full catalogue (`loss_type: CE`, `train_neg_sample_args: None`).

Strategies that need only scores of items for a query or a query representation run on it (they
declare `backbones=(..., "sequential")`); the others use structure a query does not have (a
user-item graph, item-side rankings over users, a teacher trained further on user pairs, ...) and
are refused for it. Inference cost is measured per query in each run (`cost_adapter`), not on
synthetic catalogues.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from kdbench.backbones import BackboneAdapter, ModelCard
from kdbench.data.loading import (BUNDLED_DATASETS, TIME_FIELD, TOPK, PreparedData, atomic_columns, build_config,
                          bundled_dataset_dir, check_dataset, dataset_root)
from kdbench.errors import KdbenchError
from kdbench.families.base import Family, Protocol, register_family
from kdbench.strategies import DistillationContext

SEQUENTIAL = "sequential"
LEAVE_ONE_OUT = "leave-one-out"
QUERY_FIELD = "query_id"
# Evaluation batches count queries (RecBole's sequential full-sort loader batches rows, not cells).
EVAL_BATCH_QUERIES = 1024
# Inputs are the last MAX_SEQUENCE_LENGTH items. 20, not RecBole's 50: a SASRec epoch on ml-100k
# costs about 3x less (97,172 training queries; measured in kdbench/suites/sequential.yaml), which
# the sequential suite's 60-minute budget needs.
MAX_SEQUENCE_LENGTH = 20
# RecBole's leave-one-out by time, full ranking, cross-entropy training over the catalogue.
SEQUENTIAL_PROTOCOL: dict[str, Any] = {
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "metrics": ["Recall", "NDCG"],
    "topk": list(TOPK),
    "valid_metric": "NDCG@10",
    "valid_metric_bigger": True,
    "train_neg_sample_args": None,
    "loss_type": "CE",
    "MAX_ITEM_LIST_LENGTH": MAX_SEQUENCE_LENGTH,
}
# RecBole config keys every sequential model takes from the data's config
_SEQUENTIAL_KEYS = ("MAX_ITEM_LIST_LENGTH", "loss_type")


# -- the models -----------------------------------------------------------------------------------
def _sasrec_size(dim: int) -> dict[str, Any]:
    """RecBole's SASRec defaults are hidden 64, feed-forward 256: the 4x ratio is kept."""
    return {"hidden_size": dim, "inner_size": 4 * dim}


def _gru4rec_size(dim: int) -> dict[str, Any]:
    """RecBole's GRU4Rec defaults are item embeddings 64, GRU state 128: the 2x ratio is kept."""
    return {"embedding_size": dim, "hidden_size": 2 * dim}


def _sasrec_check(dim: int, options: dict[str, int]) -> str | None:
    heads = options.get("H") or 2  # RecBole's default
    return None if dim % heads == 0 else (f"the dimension {dim} must be a multiple of the number of heads "
                                          f"({heads})")


CARDS = (
    ModelCard("GRU4Rec", sizes=_gru4rec_size, options={"L": "num_layers"}),
    ModelCard("SASRec", sizes=_sasrec_size, options={"L": "n_layers", "H": "n_heads"}, check=_sasrec_check),
)
SEQUENTIAL_MODELS = tuple(card.name for card in CARDS)  # RecBole's `recbole.model.sequential_recommender`


@dataclass
class QueryTable:
    """Inputs of queries 0..Q: item ids (Q+1, L), right-padded with 0, and lengths (Q+1,).
    Row 0 is a padding query (one padding item) that strategies fill like any row and never use."""

    items: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def with_padding_row(cls, items: torch.Tensor, lengths: torch.Tensor) -> "QueryTable":
        pad_items = torch.zeros((1, items.shape[1]), dtype=items.dtype)
        pad_length = torch.ones(1, dtype=lengths.dtype)
        return cls(torch.cat([pad_items, items]), torch.cat([pad_length, lengths]))

    def to(self, device: torch.device | str) -> "QueryTable":
        return QueryTable(self.items.to(device), self.lengths.to(device))

    def history(self, n_items: int) -> sp.csr_matrix:
        """queries x items, 1 where the item is in the query's input (its items before the
        prediction point, within the window): the only items a query's knowledge may exclude."""
        positions = torch.arange(self.items.shape[1]).unsqueeze(0)
        inside = (positions < self.lengths.cpu().unsqueeze(1)) & (self.items.cpu() > 0)
        rows, cols = inside.nonzero(as_tuple=True)
        items = self.items.cpu()[rows, cols].numpy()
        matrix = sp.csr_matrix((np.ones(len(items), dtype=np.float32), (rows.numpy(), items)),
                               shape=(len(self), n_items))
        matrix.data[:] = 1.0  # an item repeated in one input counts once
        return matrix


class QueryRepresentations:
    """The sequence representations of all queries, computed only for the queries indexed.

    `table[ids]` runs the model's `forward` on those queries' inputs (differentiable when grad is on);
    `detach()` computes the whole (Q, d) table without gradients, in chunks (a frozen teacher's, once).
    """

    def __init__(self, adapter: "SequentialAdapter", dim: int, chunk: int = 4096):
        self.adapter = adapter
        self.shape = (len(adapter.queries), dim)
        self.chunk = chunk

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.adapter.encode(ids)

    def __len__(self) -> int:
        return self.shape[0]

    @torch.no_grad()
    def detach(self) -> torch.Tensor:
        device = self.adapter.queries.items.device
        parts = [self.adapter.encode(torch.arange(start, min(start + self.chunk, self.shape[0]), device=device))
                 for start in range(0, self.shape[0], self.chunk)]
        return torch.cat(parts)


class SequentialAdapter(BackboneAdapter):
    """A RecBole sequential recommender (SASRec, GRU4Rec) seen through the BackboneAdapter interface,
    with query ids in place of user ids. score(q, i) = <forward(input_q), item_embedding(i)>, the
    score RecBole's `predict` and `full_sort_predict` compute."""

    def __init__(self, model: nn.Module, queries: QueryTable | None, iid_field: str,
                 uid_field: str = QUERY_FIELD):
        super().__init__(model, uid_field, iid_field)
        self.queries = queries

    @property
    def has_representations(self) -> bool:
        return True

    def _inputs(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.queries is None:
            raise RuntimeError("this SequentialAdapter has no query table: score interactions instead")
        table = self.queries
        queries = queries.to(table.items.device)
        return table.items[queries], table.lengths[queries]

    def encode(self, queries: torch.Tensor) -> torch.Tensor:
        """The sequence representation of queries (B,) -> (B, d): RecBole's `forward`."""
        return self.model.forward(*self._inputs(queries))

    def representation_tables(self) -> tuple[QueryRepresentations, torch.Tensor]:
        return QueryRepresentations(self, self.model.item_embedding.embedding_dim), self.model.item_embedding.weight

    def representation_dims(self) -> tuple[int, int]:
        dim = self.model.item_embedding.embedding_dim
        return dim, dim

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of queries (B,) for items (B, M) -> (B, M); differentiable."""
        sequence = self.encode(users)
        return (sequence.unsqueeze(1) * self.model.item_embedding(items)).sum(dim=-1)

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of queries (B,) for every item -> (B, n_items): RecBole's `full_sort_predict`."""
        from recbole.data.interaction import Interaction

        items, lengths = self._inputs(users)
        batch = Interaction({self.model.ITEM_SEQ: items, self.model.ITEM_SEQ_LEN: lengths})
        return self.model.full_sort_predict(batch).view(len(users), -1)

    def interaction_scores(self, interaction) -> torch.Tensor:
        """Scores of an evaluation batch's rows (their own inputs) for every item."""
        return self.model.full_sort_predict(interaction).view(len(interaction), -1)


def attach_queries(train_dataset, n_items: int) -> tuple[QueryTable, sp.csr_matrix]:
    """Number the training rows `query_id` 1..Q (added to the dataset's rows, so every batch carries
    it) and return their inputs and history. Idempotent."""
    inter = train_dataset.inter_feat
    config = train_dataset.config
    seq_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    length_field = config["ITEM_LIST_LENGTH_FIELD"]
    items, lengths = inter[seq_field].long(), inter[length_field].long()
    if QUERY_FIELD not in inter.columns:
        inter[QUERY_FIELD] = torch.arange(1, len(lengths) + 1)
    table = QueryTable.with_padding_row(items, lengths)
    return table, table.history(n_items)


def rows_table(dataset) -> QueryTable:
    """The inputs of a dataset's rows (e.g. the test users' last queries) as a table, no padding row."""
    config = dataset.config
    inter = dataset.inter_feat
    return QueryTable(inter[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]].long(),
                      inter[config["ITEM_LIST_LENGTH_FIELD"]].long())


def sequential_fingerprint(dataset: str, identity: dict[str, Any], split_seed: int, table: QueryTable,
                           targets: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for part in (dataset, str(identity), str(split_seed)):
        digest.update(part.encode())
    for tensor in (table.items, table.lengths, targets):
        digest.update(np.ascontiguousarray(tensor.cpu().numpy()).tobytes())
    return digest.hexdigest()[:16]


def sequential_data(dataset: str, data_path: str | None, model: str, batch_size: int, split_seed: int,
                    device: str, work_dir: str | Path, preset: Protocol) -> PreparedData:
    """RecBole's SequentialDataset and loaders under the leave-one-out protocol, with the training
    rows numbered as queries (`attach_queries`)."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    check_dataset(dataset, data_path)
    root = dataset_root(dataset, data_path)
    if root is None and dataset in BUNDLED_DATASETS:
        root_file = bundled_dataset_dir() / f"{dataset}.inter"
    else:
        root_file = root / f"{dataset}.inter" if root is not None else None
    if root_file is not None and TIME_FIELD not in atomic_columns(root_file):
        raise KdbenchError(f"sequential models need a '{TIME_FIELD}' column in {root_file} (the leave-one-out "
                           f"protocol orders each user's interactions by it)")
    overrides = {key: value for key, value in preset.identity().items() if key != "preset"}
    overrides |= {"train_batch_size": batch_size, "seed": split_seed, "eval_batch_size": EVAL_BATCH_QUERIES,
                  "load_col": {"inter": ["user_id", "item_id", TIME_FIELD]}}
    config = build_config(model, dataset, data_path, overrides, device=device, work_dir=work_dir)
    init_seed(split_seed, True)
    try:
        full = create_dataset(config)
    except (OSError, ValueError, KeyError) as exc:
        raise KdbenchError(f"could not load dataset '{dataset}': {exc}") from None
    train, valid, test = data_preparation(config, full)
    if len(train.dataset) == 0 or len(test.dataset) == 0:
        raise KdbenchError(f"dataset '{dataset}' is too small for leave-one-out: each user needs 3 interactions")
    queries, history = attach_queries(train.dataset, int(full.item_num))
    targets = train.dataset.inter_feat[full.iid_field]
    fingerprint = sequential_fingerprint(dataset, preset.identity(), split_seed, queries, targets)
    return PreparedData(dataset, config, full, train, valid, test, history, fingerprint, queries=queries)


# -- the family -----------------------------------------------------------------------------------
@register_family
class SequentialFamily(Family):
    name = SEQUENTIAL
    query = "a user's items before the prediction point"
    default_protocol = LEAVE_ONE_OUT
    protocols = (Protocol(LEAVE_ONE_OUT, SEQUENTIAL, "time", "nothing",
                          f"sequential models: per user by timestamp, last item test, second to last validation "
                          f"(RecBole LS valid_and_test, TO), inputs the last {MAX_SEQUENCE_LENGTH} items, nothing "
                          f"masked", {**SEQUENTIAL_PROTOCOL, "preset": LEAVE_ONE_OUT}),)
    cards = CARDS
    catalogue_cost = False  # a query is an input sequence, which synthetic catalogues do not have
    # DCD's item side ranks queries per item, which has no meaning for prediction points (and scores
    # every query each epoch per item)
    required_hparams = {"dcd": {"item_weight": 0.0}}

    def has_representations(self, model: str) -> bool:
        return True  # the sequence representation and the item embeddings (SequentialAdapter)

    def model_settings(self, data_config) -> dict[str, Any]:
        """The protocol's input length and loss, and no negative sampling (the loss is over the catalogue)."""
        return {key: data_config[key] for key in _SEQUENTIAL_KEYS} | {"train_neg_sample_args": None}

    def load(self, dataset: str, data_path: str | None, model: str, batch_size: int, split_seed: int,
             device: str, work_dir: str | Path, protocol: Protocol) -> PreparedData:
        return sequential_data(dataset, data_path, model, batch_size, split_seed, device, work_dir, protocol)

    def context(self, data, student, teacher=None, device: str = "cpu", seed: int = 0) -> DistillationContext:
        """Queries where the general family has users: the batch's `query_id` is the uid field."""
        queries = data.queries.to(device)
        return DistillationContext(
            teacher=SequentialAdapter(teacher, queries, data.iid_field) if teacher is not None else None,
            student=SequentialAdapter(student, queries, data.iid_field),
            n_users=len(queries), n_items=data.n_items, history=data.history,
            uid_field=QUERY_FIELD, iid_field=data.iid_field, neg_iid_field=data.neg_iid_field,
            device=torch.device(device), seed=seed,
        )

    def evaluation_adapter(self, model, uid_field: str, iid_field: str) -> BackboneAdapter:
        """Each evaluation row's own input sequence is scored (no query table)."""
        return SequentialAdapter(model, None, iid_field, uid_field=uid_field)

    def cost_adapter(self, model, data) -> tuple[BackboneAdapter, int]:
        """The test users' input sequences."""
        device = next(model.parameters()).device
        table = rows_table(data.test.dataset).to(device)
        return SequentialAdapter(model, table, data.iid_field), len(table)
