"""The general family: RecBole's general recommenders; a query is a user id.

Every built-in strategy runs on it except those written for sequences only (`kd-full`). Its
protocols differ in how each user's interactions are split 80/10/10 and in what is masked at test
time:

- `random` (the default; DE-RRD, HTD, UnKD, RCE-KD's text): RecBole's per-user random split
  (`RS`, `RO`), fixed by `split_seed`, independent of the model seed, so every student of a dataset
  is scored on the same users and items; test masks training and validation items.
- `ordered`: each user's interactions in the order of a `timestamp` column when the file has one,
  else in the file's order; the first max(floor(0.8 n), 1) train, up to floor(0.9 n) validation,
  the rest test (the cut points of woriazzc/KDs' `data/*/preprocess_*.py`, whose CiteULike split
  RCE-KD's tables use); test masks training and validation items, as RecBole does.
- `ordered-mask-train`: `ordered`, with only the training items masked at test time, as that
  reference code's evaluator does (`modules/evaluation.py`): a user's validation items stay in the
  ranking as negatives.

Models with particular knowledge (`CARDS`): BPR, LightGCN, NGCF and NeuMF give user and item
representations (feature KD); every other RecBole general recommender runs with the default card.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from kdbench.backbones import BackboneAdapter, ModelCard
from kdbench.data.loading import PROTOCOL, TIME_FIELD, PreparedData, build_config, check_dataset
from kdbench.errors import KdbenchError
from kdbench.families.base import Family, Protocol, register_family
from kdbench.strategies import DistillationContext

GENERAL = "general"
RANDOM, ORDERED, ORDERED_MASK_TRAIN = "random", "ordered", "ordered-mask-train"
MASK_TRAIN_AND_VALID, MASK_TRAIN = "train+valid", "train"


# -- the models -----------------------------------------------------------------------------------
def _neumf_size(dim: int) -> dict[str, Any]:
    return {"mf_embedding_size": dim, "mlp_embedding_size": dim, "mlp_hidden_size": [2 * dim, dim]}


def _mf_tables(model):
    return model.user_embedding.weight, model.item_embedding.weight


def _graph_tables(model):
    return model.forward()


def _neumf_tables(model):
    users = torch.cat([model.user_mf_embedding.weight, model.user_mlp_embedding.weight], dim=1)
    items = torch.cat([model.item_mf_embedding.weight, model.item_mlp_embedding.weight], dim=1)
    return users, items


CARDS = (
    ModelCard("BPR", representations=_mf_tables, dot_product=True),
    # LightGCN and NGCF: forward() propagates the whole graph and takes no input
    ModelCard("LightGCN", representations=_graph_tables, dot_product=True, whole_graph_forward=True),
    ModelCard("NGCF", representations=_graph_tables, dot_product=True, whole_graph_forward=True),
    # NeuMF has an MF and an MLP embedding per user and item; its score is not their dot product
    ModelCard("NeuMF", sizes=_neumf_size, representations=_neumf_tables, tables_per_row=2),
)


@lru_cache(maxsize=1)
def general_recommenders() -> tuple[str, ...]:
    import recbole.model.general_recommender as general

    return tuple(sorted(name for name in dir(general) if isinstance(getattr(general, name), type)))


# -- the protocols --------------------------------------------------------------------------------
def _ordered_settings(name: str, test_mask: str) -> dict[str, Any]:
    return {**PROTOCOL, "preset": name, "test_mask": test_mask,
            "eval_args": {"split": {"ordered": [0.8, 0.1, 0.1]}, "order": f"{TIME_FIELD} then file",
                          "group_by": "user", "mode": "full"}}


# `random` holds exactly the settings records held before presets existed, so those stay current.
PROTOCOLS = (
    Protocol(RANDOM, GENERAL, "random", MASK_TRAIN_AND_VALID,
             "per-user random 80/10/10 (RecBole RS), test masks train+valid items", PROTOCOL),
    Protocol(ORDERED, GENERAL, "file", MASK_TRAIN_AND_VALID,
             "per-user 80/10/10 in timestamp or file order, test masks train+valid items",
             _ordered_settings(ORDERED, MASK_TRAIN_AND_VALID)),
    Protocol(ORDERED_MASK_TRAIN, GENERAL, "file", MASK_TRAIN,
             "per-user 80/10/10 in timestamp or file order, test masks train items only (woriazzc/KDs, RCEKD)",
             _ordered_settings(ORDERED_MASK_TRAIN, MASK_TRAIN)),
)


def ordered_cut_points(n: int) -> tuple[int, int]:
    """(end of train, end of validation) for a user's n ordered interactions.

    train = first max(floor(0.8 n), 1), validation up to floor(0.9 n), test the rest: the cut points
    of woriazzc/KDs' preprocessing (5 items -> 4/0/1, 11 -> 8/1/2). RecBole's RS rounds differently
    (5 -> 3/1/1, 11 -> 9/1/1), which is why `ordered` does not use it. For n = 1 the reference puts
    the item in train and test; here it is train only (validation end clamped to train end).
    """
    train = max(8 * n // 10, 1)
    return train, max(9 * n // 10, train)


def ordered_split_indices(users: np.ndarray, times: np.ndarray | None = None) -> list[np.ndarray]:
    """Row indices of train, validation and test for interactions of `users` in row (file) order,
    ordered per user by `times` (ties and no times: row order). Rows come out grouped by user."""
    rows = np.arange(len(users))
    keys = (rows, users) if times is None else (rows, times, users)
    order = np.lexsort(keys)
    grouped = users[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    position = np.arange(len(order)) - np.repeat(starts, counts)
    train_end = np.maximum(8 * counts // 10, 1)
    valid_end = np.maximum(9 * counts // 10, train_end)
    part = np.where(position < np.repeat(train_end, counts), 0,
                    np.where(position < np.repeat(valid_end, counts), 1, 2))
    return [order[part == k] for k in range(3)]


def _ordered_build(dataset) -> list:
    """RecBole's `Dataset.build` for an ordered protocol: the three parts of `ordered_split_indices`."""
    dataset._change_feat_format()
    dataset._drop_unused_col()
    inter = dataset.inter_feat
    times = inter[TIME_FIELD].numpy() if TIME_FIELD in inter.columns else None
    parts = ordered_split_indices(inter[dataset.uid_field].numpy(), times)
    return [dataset.copy(inter[torch.from_numpy(index)]) for index in parts]


def _mask_training_items_only(loader, history: sp.csr_matrix) -> None:
    """Make a full-sort loader mask each user's training items only (RecBole masks every earlier
    part: training and validation items for the test loader)."""
    for uid in loader.uid_list.tolist():
        items = history.indices[history.indptr[uid]:history.indptr[uid + 1]]
        loader.uid2history_item[uid] = torch.from_numpy(items.astype(np.int64))


def split_fingerprint(dataset: str, preset: Protocol, split_seed: int, history: sp.csr_matrix) -> str:
    """The hash of the training interactions and the split: part of cache keys and records."""
    digest = hashlib.sha256()
    digest.update(dataset.encode())
    digest.update(str(preset.identity()["eval_args"]).encode())
    if preset.name != RANDOM:  # the random protocol's fingerprints (and teacher cache keys) stay as they were
        digest.update(preset.name.encode())
    digest.update(str(split_seed).encode())
    digest.update(np.ascontiguousarray(history.indptr).tobytes())
    digest.update(np.ascontiguousarray(history.indices).tobytes())
    return digest.hexdigest()[:16]


# -- the family -----------------------------------------------------------------------------------
@register_family
class GeneralFamily(Family):
    name = GENERAL
    query = "a user id"
    default_protocol = RANDOM
    protocols = PROTOCOLS
    cards = CARDS

    def models(self) -> tuple[str, ...]:
        return general_recommenders()

    def load(self, dataset: str, data_path: str | None, model: str, batch_size: int, split_seed: int,
             device: str, work_dir: str | Path, protocol: Protocol) -> PreparedData:
        """RecBole's dataset split once under `protocol`, through `data_preparation` (an ordered
        protocol replaces its `build`)."""
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import init_seed

        check_dataset(dataset, data_path)
        config = build_config(model, dataset, data_path, {"train_batch_size": batch_size, "seed": split_seed},
                              device=device, work_dir=work_dir, load_time=protocol.order == "file")
        init_seed(split_seed, True)
        try:
            full = create_dataset(config)
        except KdbenchError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise KdbenchError(f"could not load dataset '{dataset}': {exc}") from None
        if full.user_num < 3 or full.item_num < 3:
            raise KdbenchError(f"dataset '{dataset}' is too small to split 80/10/10 ({full.inter_num} interactions)")
        if protocol.order == "file":
            full.build = lambda: _ordered_build(full)  # data_preparation splits through dataset.build()
        train, valid, test = data_preparation(config, full)
        history = train.dataset.inter_matrix(form="csr").astype(np.float32)
        if protocol.test_mask == MASK_TRAIN:
            _mask_training_items_only(test, history.tocsr())
        fingerprint = split_fingerprint(dataset, protocol, split_seed, history)
        return PreparedData(dataset, config, full, train, valid, test, history.tocsr(), fingerprint)

    def context(self, data, student, teacher=None, device: str = "cpu", seed: int = 0) -> DistillationContext:
        return DistillationContext.build(data, student, teacher, device, seed)

    def evaluation_adapter(self, model, uid_field: str, iid_field: str) -> BackboneAdapter:
        return BackboneAdapter(model, uid_field, iid_field)

    def cost_adapter(self, model, data) -> tuple[BackboneAdapter, int]:
        """The users, scored by id."""
        return BackboneAdapter(model, data.uid_field, data.iid_field), data.n_users
