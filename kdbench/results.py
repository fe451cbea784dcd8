"""Where run records live: one JSON file per cell under `<results>/runs/`, written atomically.

Layout: runs/<dataset>/<teacher>_to_<student>/<strategy label>/seed<k>.json (and a .log beside it);
under a protocol other than the default `random`, the dataset folder is `<dataset>@<protocol>`.
Reading one back checks it (`check_record`): a truncated or hand-edited file is a `DamagedFile`
error naming it, never a traceback in a reader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from kdbench import atomic
from kdbench.stored import DamagedFile, read_mapping

# The names a run record uses, defined once for the runner, the tuner and the report.
TEACHER = "teacher"  # the teacher's own row (its `strategy` and `family`)
SCRATCH = "scratch"  # the baseline every strategy is compared with
DEFAULTS, TUNED = "defaults", "tuned"  # a record's variant: published defaults, or tuned hyperparameters
VARIANT_TITLES = {TUNED: "Tuned: every strategy, scratch included, with the same tuning budget",
                  DEFAULTS: "Published defaults"}  # the leaderboard's and the figures' headings
METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20")  # the test metrics a record holds
DEFAULT_PROTOCOL = "random"  # a record without a `protocol` field was made under it (data.PROTOCOLS)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,@+-]")
ADVICE = "restore it, or delete it (or pass --force) and run that cell again"


def run_label(strategy: str, hparams: dict[str, Any]) -> str:
    """`rrd`, or `rrd@K=20,T=5` when hyperparameters are overridden (a different cell)."""
    if not hparams:
        return strategy
    return strategy + "@" + ",".join(f"{k}={hparams[k]}" for k in sorted(hparams))


def dataset_label(dataset: str, protocol: str | None = None) -> str:
    """`ml-100k` under the default protocol, `citeulike-t@ordered` under another: the name of a
    dataset's runs folder and of its tables, so runs under different protocols never mix."""
    protocol = protocol or DEFAULT_PROTOCOL
    return dataset if protocol == DEFAULT_PROTOCOL else f"{dataset}@{protocol}"


def record_protocol(record: dict[str, Any]) -> str:
    return record.get("protocol") or DEFAULT_PROTOCOL


def safe_name(text: str) -> str:
    """A label or pairing as a file name: `BPR:64->BPR:5` -> `BPR-64_to_BPR-5`."""
    return _UNSAFE.sub("-", text.replace("->", "_to_").replace(":", "-"))


class RunStore:
    def __init__(self, results_dir: str | Path):
        self.root = Path(results_dir)
        self.runs = self.root / "runs"

    def path(self, dataset: str, pairing: str, label: str, seed: int, protocol: str | None = None) -> Path:
        return (self.runs / safe_name(dataset_label(dataset, protocol)) / safe_name(pairing) / safe_name(label)
                / f"seed{seed}.json")

    def read(self, dataset: str, pairing: str, label: str, seed: int,
             protocol: str | None = None) -> dict[str, Any] | None:
        """The record stored for this cell, None if there is none, `DamagedFile` if it is damaged."""
        path = self.path(dataset, pairing, label, seed, protocol)
        if not path.exists():
            return None
        return self.load(path)

    def load(self, path: Path) -> dict[str, Any]:
        """A run record from its file, checked (`check_record`) and found where its fields put it."""
        record = read_mapping(path, ADVICE)
        problem = check_record(record)
        if problem is None:
            expected = self.path(record["dataset"], record["pairing"], record["label"], record["seed"],
                                 record_protocol(record))
            if expected.resolve() != Path(path).resolve():
                problem = f"its fields place it at {expected}, not here"
        if problem:
            raise DamagedFile(path, problem, ADVICE)
        return record

    def write(self, dataset: str, pairing: str, label: str, seed: int, record: dict[str, Any],
              protocol: str | None = None) -> Path:
        path = self.path(dataset, pairing, label, seed, protocol)
        atomic.write_json(path, record)
        return path

    def clear_partial_writes(self) -> int:
        """Remove temp files left by a write that was killed before its rename; they never count."""
        stale = list(self.runs.rglob(".*.tmp")) if self.runs.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def files(self) -> list[Path]:
        """Every stored run file, in a stable order."""
        return sorted(self.runs.glob("*/*/*/seed*.json"))

    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored run record, in a stable order; `DamagedFile` at the first damaged one."""
        for path in self.files():
            yield self.load(path)


# What readers of a record rely on; the rest may be absent (older formats, failed runs).
_TEXT_FIELDS = ("dataset", "pairing", "label", "strategy")
_NUMERIC_SECTIONS = ("test", "cost", "teacher_test")  # objects of numbers
_SECTIONS = ("config", "environment", "training", "hparams", "per_user")  # objects


def check_record(record: Any) -> str | None:
    """What is wrong with a run record's structure (a hand edit, a foreign file), or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, found {type(record).__name__}"
    for field in _TEXT_FIELDS:
        if not isinstance(record.get(field), str) or not record[field]:
            return f"'{field}' is missing or not a string"
    if "protocol" in record and (not isinstance(record["protocol"], str) or not record["protocol"]):
        return "'protocol' is not a protocol name"
    if not _is_int(record.get("seed")):
        return "'seed' is missing or not an integer"
    if record.get("status") not in ("ok", "failed"):
        return f"'status' is {record.get('status')!r}, expected 'ok' or 'failed'"
    for section in _SECTIONS + _NUMERIC_SECTIONS:
        if section in record and not isinstance(record[section], dict):
            return f"'{section}' is not an object"
    for section in _NUMERIC_SECTIONS:
        for key, value in (record.get(section) or {}).items():
            if not _is_number(value):
                return f"'{section}.{key}' is {value!r}, not a number"
    for key, value in (record.get("training") or {}).items():
        if key != "valid_curve" and not (_is_number(value) or isinstance(value, bool)):
            return f"'training.{key}' is {value!r}, not a number"
    for key in ("valid_ndcg@10", "wall_seconds"):
        if key in record and not _is_number(record[key]):
            return f"'{key}' is {record[key]!r}, not a number"
    if record["status"] == "ok" and not isinstance(record.get("test"), dict):
        return "a finished run without 'test' metrics"
    per_user = record.get("per_user") or {}
    lengths = set()
    for key, values in per_user.items():
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            return f"'per_user.{key}' is not a list of numbers"
        lengths.add(len(values))
    if len(lengths) > 1:
        return "the 'per_user' lists have different lengths"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
