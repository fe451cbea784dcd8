"""Cells and run records: the unit of work and the one definition of what a result file holds.

A cell is (dataset, teacher -> student, strategy, seed) plus everything that determines its result:
the strategy's hyperparameters, the training settings, the split, the evaluation protocol
(`families.PROTOCOLS`) and the thread count. Its
`identity` is stored in the record (`config`); a stored run is reused only if its identity equals
the cell's, so a changed default, a changed strategy implementation (`code_version`) or another
thread count makes the cell run again (or be refused without --force).
"""

from __future__ import annotations

import datetime as dt
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict

from kdbench.data import DEFAULT_SPLIT_SEED
from kdbench.families import DEFAULT_PROTOCOL, BackboneSpec, get_protocol
from kdbench.results import DEFAULTS, TEACHER, TUNED, run_label
from kdbench.train import TrainSettings

RECORD_FORMAT = 2  # `kdbench_run`: 2 adds hparams, strategy code version and threads to `config`
# Intra-op threads per cell. The models are too small to gain from a second thread, and the thread
# count changes results in the last digits: fixed, so a result does not depend on the executor.
CELL_THREADS = 1


@dataclass(frozen=True)
class Cell:
    """One unit of work. `strategy == "teacher"` is the teacher's own row."""

    dataset: str
    teacher: BackboneSpec
    student: BackboneSpec
    strategy: str
    seed: int
    hparams: tuple[tuple[str, Any], ...] = ()
    train: TrainSettings = field(default_factory=TrainSettings)
    teacher_train: TrainSettings | None = None  # defaults to `train`
    teacher_seed: int = 0
    data_path: str | None = None
    split_seed: int = DEFAULT_SPLIT_SEED
    variant: str = DEFAULTS
    threads: int = CELL_THREADS
    protocol: str = DEFAULT_PROTOCOL  # a preset of families.PROTOCOLS

    @property
    def label(self) -> str:
        return f"{self.strategy}@{TUNED}" if self.variant == TUNED else run_label(self.strategy, dict(self.hparams))

    @property
    def pairing(self) -> str:
        return f"{self.teacher}->{self.student}"

    @property
    def is_teacher(self) -> bool:
        return self.strategy == TEACHER

    @property
    def teacher_settings(self) -> TrainSettings:
        return self.teacher_train or self.train

    def teacher_cell(self) -> "Cell":
        return replace(self, strategy=TEACHER, seed=self.teacher_seed, hparams=(), variant=DEFAULTS)


# A result file (`results/runs/.../seed<k>.json`); `model` is the model the row measures (the
# teacher for the teacher row), `config` the cell's identity, `status` "ok" or "failed" (+ `error`).
RunRecord = TypedDict("RunRecord", {
    "kdbench_run": int, "status": str, "error": str, "dataset": str, "teacher": str, "student": str,
    "pairing": str, "model": str, "strategy": str, "label": str, "variant": str, "family": str,
    "seed": int, "config": dict, "environment": dict, "created": str, "test": dict,
    "valid_ndcg@10": float, "per_user": dict, "cost": dict, "training": dict, "hparams": dict,
    "training_only_params": int, "teacher_test": dict, "teacher_trained_further": bool,
    "wall_seconds": float, "protocol": str,
}, total=False)


def resolved_hparams(cell: Cell) -> dict[str, Any]:
    """The strategy's defaults updated by the cell's overrides ({} for the teacher row)."""
    if cell.is_teacher:
        return {}
    from kdbench.strategies import STRATEGIES

    return STRATEGIES.get(cell.strategy).resolve_hparams(dict(cell.hparams))


def identity(cell: Cell, device: str) -> dict[str, Any]:
    """Everything besides the record's path (dataset, pairing, label, seed) that determines it."""
    identity = {
        "train": (cell.teacher_settings if cell.is_teacher else cell.train).as_dict(),
        "teacher_train": cell.teacher_settings.as_dict(),
        "protocol": get_protocol(cell.protocol).identity(),
        "split_seed": cell.split_seed,
        "teacher_seed": cell.teacher_seed,
        "data_path": cell.data_path,
        "device": device,
        "threads": cell.threads,
    }
    if not cell.is_teacher:
        from kdbench.strategies import STRATEGIES

        identity["hparams"] = resolved_hparams(cell)
        identity["strategy_code"] = STRATEGIES.get(cell.strategy).code_version()
    return identity


def cell_from_record(record: RunRecord, source: str = "run record") -> Cell:
    """The cell a stored record was made from, rebuilt from its path fields and `config`, so that
    it can be run again (`kdbench reproduce`) or its identity checked against the current code
    (`kdbench verify`). A record without a `protocol` field was made under `random`, the only
    protocol before presets existed. A defaults run's overrides come from its label (`rrd@K=20`), a tuned run's
    hyperparameters from `config.hparams`."""
    from kdbench.errors import KdbenchError

    config = record.get("config") or {}
    try:
        strategy, variant = record["strategy"], record.get("variant") or DEFAULTS
        teacher_train = TrainSettings(**config["teacher_train"])
        train = teacher_train if strategy == TEACHER else TrainSettings(**config["train"])
        if strategy == TEACHER:
            hparams: dict[str, Any] = {}
        elif variant == TUNED:
            hparams = dict(config.get("hparams") or record.get("hparams") or {})
        else:
            _, _, overrides = record["label"].partition("@")
            hparams = dict(item.split("=", 1) for item in overrides.split(",")) if overrides else {}
        return Cell(
            dataset=record["dataset"], teacher=BackboneSpec.parse(record["teacher"]),
            student=BackboneSpec.parse(record["student"]), strategy=strategy, seed=int(record["seed"]),
            hparams=tuple(sorted(hparams.items())), train=train, teacher_train=teacher_train,
            teacher_seed=int(config.get("teacher_seed", 0)), data_path=config.get("data_path"),
            split_seed=int(config.get("split_seed", DEFAULT_SPLIT_SEED)), variant=variant,
            threads=int(config.get("threads", CELL_THREADS)),
            protocol=str(record.get("protocol") or DEFAULT_PROTOCOL),
        )
    except KdbenchError as exc:
        raise KdbenchError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"lacks {exc}" if isinstance(exc, KeyError) else f"has a malformed field ({exc})"
        raise KdbenchError(f"{source} {detail}: cannot rebuild the run it records") from None


# Identity fields that say where the data was read from, not what it is. They are recorded but not
# compared: two checkouts holding the same dataset in different folders make the same cells (the
# runner compares the data itself, by the records' `data_fingerprint`).
LOCATION_FIELDS = frozenset({"data_path"})


def identity_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The identity fields, locations aside, in which a stored `config` differs from `current`."""
    return sorted(key for key in set(current) | set(stored)
                  if key not in LOCATION_FIELDS and current.get(key) != stored.get(key))


def stale_fields(cell: Cell, config: dict[str, Any]) -> list[str]:
    """The identity fields in which a stored record's `config` differs from what the current code
    gives its cell (empty: the record is current)."""
    import json

    return identity_differences(config, json.loads(json.dumps(identity(cell, str(config.get("device", "cpu"))))))


def base_record(cell: Cell, device: str) -> RunRecord:
    from kdbench.strategies import STRATEGIES

    return {
        "kdbench_run": RECORD_FORMAT,
        "dataset": cell.dataset,
        "teacher": str(cell.teacher),
        "student": str(cell.student),
        "pairing": cell.pairing,
        "model": str(cell.teacher if cell.is_teacher else cell.student),
        "strategy": cell.strategy,
        "label": cell.label,
        "variant": cell.variant,
        "family": TEACHER if cell.is_teacher else STRATEGIES.get(cell.strategy).family,
        "seed": cell.seed,
        "protocol": cell.protocol,
        "config": identity(cell, device),
        "environment": environment(cell.threads),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def environment(threads: int) -> dict[str, str]:
    import recbole
    import torch

    from kdbench import __version__

    return {
        "kdbench": __version__,
        "recbole": recbole.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "threads": str(threads),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
