"""Backbone families (in the spirit of RecBole's ModelType): what differs between general and
sequential recommenders, in one place.

A family owns its protocols (`data.PROTOCOLS` entries with its name), how its data is loaded
(`load_data` hands sequential models to `kdbench.sequential`), the adapter through which
strategies and the evaluator see a model, the distillation context, the query set on which
inference cost is measured, and which strategies it supports. Everything else (the trainer, the
runner, the strategies' own code, the report) is shared.

- `general`: RecBole's general recommenders; a query is a user id; every built-in strategy except
  those written for sequences only.
- `sequential`: SASRec, GRU4Rec; a query is a user's input sequence at one prediction point (a
  training row, `kdbench.sequential`); the strategies that need only scores of items for a query or
  a query representation (`SEQUENTIAL_STRATEGIES`). The others use structure a query does not have
  (a user-item graph, item-side rankings over users, a teacher trained further on user pairs, ...)
  and are refused for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.backbones import BackboneAdapter, BackboneSpec, is_sequential
from kdbench.data import DEFAULT_PROTOCOL, DEFAULT_SPLIT_SEED, PreparedData, load_general_data
from kdbench.errors import KdbenchError, choices

GENERAL, SEQUENTIAL = "general", "sequential"

# Strategies that run on sequential queries: response KD (the student's top-K candidates, `kd`, and
# the full catalogue, `kd-full`), ranking KD from the teacher's top-K for the query (`rrd`,
# `rrd-topk`, `dcd` with its query side only, `rce-kd`), feature KD on the sequence
# representation (`fitnet`, `fitnet-mlp`), and the scratch baseline.
SEQUENTIAL_STRATEGIES = ("scratch", "kd", "kd-full", "rrd", "rrd-topk", "dcd", "rce-kd", "fitnet", "fitnet-mlp")
# Written for sequential queries; kept out of the general family so its suites' cells stay as committed.
SEQUENTIAL_ONLY = ("kd-full",)
# Hyperparameters a sequential run must hold: DCD's item side ranks queries per item, which has no
# meaning for prediction points (and scores every query each epoch per item).
SEQUENTIAL_REQUIRED_HPARAMS: dict[str, dict[str, Any]] = {"dcd": {"item_weight": 0.0}}


@dataclass(frozen=True)
class Family:
    name: str
    query: str  # what a query is, in words

    def supports(self, strategy: str) -> bool:
        parts = strategy.split("+")
        if self.name == SEQUENTIAL:
            return all(part in SEQUENTIAL_STRATEGIES for part in parts)
        return not any(part in SEQUENTIAL_ONLY for part in parts)

    def check_strategy(self, strategy: str, hparams: dict[str, Any] | None = None) -> None:
        """One line naming the problem and the strategies the family supports."""
        if not self.supports(strategy):
            from kdbench.strategies import STRATEGIES

            valid = [name for name in STRATEGIES.names() if self.supports(name)]
            raise KdbenchError(f"strategy '{strategy}' does not apply to {self.name} backbones (a query is "
                               f"{self.query}): valid for them: {choices(valid)}")
        if self.name == SEQUENTIAL:
            from kdbench.strategies import STRATEGIES

            resolved = STRATEGIES.get(strategy).resolve_hparams(dict(hparams or {}))
            for key, value in SEQUENTIAL_REQUIRED_HPARAMS.get(strategy, {}).items():
                if resolved.get(key) != value:
                    raise KdbenchError(f"strategy '{strategy}' on sequential backbones needs {key}={value} "
                                       f"(got {resolved.get(key)}): pass --hp {key}={value} or set it in the suite")

    def context(self, data, student, teacher=None, device: str = "cpu", seed: int = 0):
        """The DistillationContext of a run on `data` for this family."""
        from kdbench.strategies import DistillationContext

        if self.name == GENERAL:
            return DistillationContext.build(data, student, teacher, device, seed)
        import torch

        from kdbench.sequential import QUERY_FIELD, SequentialAdapter

        queries = data.queries.to(device)
        return DistillationContext(
            teacher=SequentialAdapter(teacher, queries, data.iid_field) if teacher is not None else None,
            student=SequentialAdapter(student, queries, data.iid_field),
            n_users=len(queries), n_items=data.n_items, history=data.history,
            uid_field=QUERY_FIELD, iid_field=data.iid_field, neg_iid_field=data.neg_iid_field,
            device=torch.device(device), seed=seed,
        )

    def cost_adapter(self, model, data) -> tuple[BackboneAdapter, int]:
        """(adapter, number of queries) on which inference cost is measured: the users (general),
        the test users' input sequences (sequential)."""
        if self.name == GENERAL:
            return BackboneAdapter(model, data.uid_field, data.iid_field), data.n_users
        from kdbench.sequential import SequentialAdapter, rows_table

        device = next(model.parameters()).device
        table = rows_table(data.test.dataset).to(device)
        return SequentialAdapter(model, table, data.iid_field), len(table)


FAMILIES: dict[str, Family] = {
    GENERAL: Family(GENERAL, "a user id"),
    SEQUENTIAL: Family(SEQUENTIAL, "a user's items before the prediction point"),
}


def family_of(spec: BackboneSpec | str) -> Family:
    model = spec.model if isinstance(spec, BackboneSpec) else spec
    from kdbench.backbones import SEQUENTIAL_MODELS

    return FAMILIES[SEQUENTIAL if model in SEQUENTIAL_MODELS else GENERAL]


def load_data(
    dataset: str,
    data_path: str | None = None,
    model: str = "BPR",
    batch_size: int = 2048,
    split_seed: int = DEFAULT_SPLIT_SEED,
    device: str = "cpu",
    work_dir: str | Path = ".kdbench_cache",
    protocol: str = DEFAULT_PROTOCOL,
) -> PreparedData:
    """`dataset` loaded and split under `protocol` for `model`'s family (`data.load_general_data`
    or `sequential.load_sequential_data`); every model of a run shares these loaders."""
    if family_of(model).name == SEQUENTIAL:
        from kdbench.sequential import load_sequential_data

        return load_sequential_data(dataset, data_path, model, batch_size, split_seed, device, work_dir, protocol)
    return load_general_data(dataset, data_path, model, batch_size, split_seed, device, work_dir, protocol)


def family_of_model(model) -> Family:
    return FAMILIES[SEQUENTIAL if is_sequential(model) else GENERAL]


def check_pairing(teacher: BackboneSpec, student: BackboneSpec, strategy: str, protocol: str,
                  hparams: dict[str, Any] | None = None) -> Family:
    """The pairing's family, after checking that teacher and student share it, that the protocol
    is the family's and that the strategy applies to it."""
    from kdbench.data import PROTOCOLS, get_protocol

    family = family_of(teacher)
    if family_of(student) is not family:
        raise KdbenchError(f"teacher {teacher} is a {family.name} backbone and student {student} a "
                           f"{family_of(student).name} one: a pairing stays within one family")
    if get_protocol(protocol).family != family.name:
        valid = [p.name for p in PROTOCOLS.values() if p.family == family.name]
        raise KdbenchError(f"protocol '{protocol}' is not for {family.name} backbones ({teacher}): valid: "
                           f"{choices(valid)}")
    if strategy != "teacher":
        family.check_strategy(strategy, hparams)
    return family


def default_protocol(spec: BackboneSpec) -> str:
    """The protocol a run without --protocol gets: `random` (general), `leave-one-out` (sequential)."""
    from kdbench.data import LEAVE_ONE_OUT

    return LEAVE_ONE_OUT if family_of(spec).name == SEQUENTIAL else DEFAULT_PROTOCOL
