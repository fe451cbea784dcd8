"""The run record: a cell's address, its identity, the record's schema and check, reading and writing.

A finished cell is one JSON file (`RunRecord`) at its *address* (dataset, pairing, label, seed,
protocol): `<results>/runs/<dataset>[@<protocol>]/<teacher>_to_<student>/<label>/seed<k>.json`, a
`.log` beside it; the protocol is in the folder name unless it is the default `random`. Files are
written atomically; reading one back checks it (`check_record`), so a truncated or hand-edited file
is a `DamagedFile` error naming it, never a traceback in a reader.

What a stored record is reused for is its *identity*: its address, its `config` (`identity`:
everything besides the address that determines the result, the data's location aside:
`LOCATION_FIELDS`) and its `data_fingerprint` (the hash of the split, which also keys the teacher
cache: `teacher_identity`). A stored run counts as the cell's only if all three agree
(`is_current`); a record from before fingerprints were stored is taken at its word about the data.
A finished record without a section every run has written since it was added (`CURRENT_SECTIONS`)
is stale too: `run --replace-stale` makes it again, so that every row of a table carries them.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypedDict

from kdbench.store import atomic
from kdbench.data.location import recorded_data_path
from kdbench.families import DEFAULT_PROTOCOL, get_protocol
from kdbench.evaluation.metrics import VALID_PRIMARY_METRIC
from kdbench.store.reading import DamagedFile, read_mapping
from kdbench.strategies import STRATEGIES, strategy_code
from kdbench.training.teacher_file import is_file_teacher

RECORD_FORMAT = 2  # `kdbench_run`: 2 adds hparams, strategy code version and threads to `config`
# The names a run record uses, defined once for the runner, the tuner and the report.
TEACHER = "teacher"  # the teacher's own row (its `strategy` and `family`)
SCRATCH = "scratch"  # the baseline every strategy is compared with
DEFAULTS, TUNED = "defaults", "tuned"  # a record's variant: published defaults, or tuned hyperparameters
VARIANT_TITLES = {TUNED: "Tuned: every strategy, scratch included, with the same tuning budget",
                  DEFAULTS: "Published defaults"}  # the leaderboard's and the figures' headings
METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20")  # the test metrics a record holds

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,@+-]")
ADVICE = "restore it, or delete it (or pass --force) and run that cell again"


# -- the address ----------------------------------------------------------------------------------
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
    """A record's protocol; one without the field was made under `random`, the only one then."""
    return record.get("protocol") or DEFAULT_PROTOCOL


def safe_name(text: str) -> str:
    """A label or pairing as a file name: `BPR:64->BPR:5` -> `BPR-64_to_BPR-5`."""
    return _UNSAFE.sub("-", text.replace("->", "_to_").replace(":", "-"))


@dataclass(frozen=True)
class Address:
    """Where a cell's record lives; `pairing` is `teacher->student`."""

    dataset: str
    pairing: str
    label: str
    seed: int
    protocol: str = DEFAULT_PROTOCOL

    @classmethod
    def of(cls, record: dict[str, Any]) -> "Address":
        """The address a record's own fields give (a checked record)."""
        return cls(record["dataset"], record["pairing"], record["label"], record["seed"], record_protocol(record))

    def relative_path(self) -> Path:
        return (Path(safe_name(dataset_label(self.dataset, self.protocol))) / safe_name(self.pairing)
                / safe_name(self.label) / f"seed{self.seed}.json")


# -- the schema -----------------------------------------------------------------------------------
Numbers = dict[str, float]  # a section of numbers (metrics, costs)

# A result file. `model` is the model the row measures (the teacher for the teacher row), `config`
# the cell's identity, `status` "ok" or "failed" (+ `error`), `family` the strategy's kind of
# knowledge (`teacher` for the teacher row), `data_fingerprint` the split's hash (finished runs),
# `ensemble` an ensemble strategy's teachers (HetComp; the pairing's first): each one's spec
# (`teacher`), teacher cache `key` and `test` metrics.
RunRecord = TypedDict("RunRecord", {
    "ensemble": list,
    "kdbench_run": int, "status": str, "error": str, "dataset": str, "teacher": str, "student": str,
    "pairing": str, "model": str, "strategy": str, "label": str, "variant": str, "family": str,
    "seed": int, "protocol": str, "config": dict, "environment": dict, "created": str,
    "data_fingerprint": str, "test": Numbers, "valid_ndcg@10": float, "cost": Numbers, "training": dict,
    "hparams": dict, "per_user": dict, "training_only_params": int, "teacher_test": Numbers,
    "teacher_trained_further": bool, "wall_seconds": float, "beyond": Numbers, "test_users": dict,
    "compression": dict,
}, total=False)
# `compression` (compression baselines, issue 28): the deployed format of a compressed model
# (`format`, `kernel`, `params` stored, `size_bytes`); `cost.size_bytes` is then that format's size.
# `beyond` (runs since issue 27): the test users' beyond-accuracy metrics (`kdbench.evaluation.beyond`);
# `test_users.train_interactions`: each test user's training interactions, in `per_user`'s order.

# What readers rely on (the rest may be absent: older formats, failed runs).
REQUIRED_TEXT = ("dataset", "pairing", "label", "strategy")
_SECTIONS = tuple(key for key, kind in RunRecord.__annotations__.items() if kind is dict)
_NUMERIC_SECTIONS = tuple(key for key, kind in RunRecord.__annotations__.items() if kind == Numbers)
# What the seed determines, so that a rerun of the cell must give it again (`kdbench reproduce`):
# sections compared key by key, and single fields (dotted paths); never timings.
SEED_DETERMINED_SECTIONS = ("test", "teacher_test", "per_user", "beyond")
# Sections records hold only since they were added: compared when the stored run has them, so a run
# made before (no `beyond` before issue 27) still reproduces on the values it holds.
ADDED_SECTIONS = frozenset({"beyond"})
# Sections every finished run has written since they were added (issue 27): a finished record
# without one was made by an older writer (the round-2 scratch, FitNet and teacher rows reused as
# current held no beyond-accuracy metrics, so their tables could not compare with the teacher).
CURRENT_SECTIONS = ("beyond", "test_users")
SEED_DETERMINED_FIELDS = ("status", "error", VALID_PRIMARY_METRIC, "training.best_epoch", "training.epochs_run",
                          "training.valid_curve", "cost.params")
# One flat column per nested field, for tables of runs: column -> (section, field).
FLAT_FIELDS = {
    "params": ("cost", "params"),
    "size_bytes": ("cost", "size_bytes"),
    "train_s_per_epoch": ("training", "seconds_per_epoch"),
    "kd_prepare_seconds": ("training", "kd_prepare_seconds"),
    # the rest of the time breakdown (`work.measure`; absent from records that predate it)
    **{key: ("training", key) for key in ("train_seconds", "eval_seconds", "test_seconds",
                                          "teacher_load_seconds", "cost_seconds")},
    "epochs_run": ("training", "epochs_run"),
    "best_epoch": ("training", "best_epoch"),
    "hit_epoch_cap": ("training", "hit_epoch_cap"),
    "teacher_ndcg@10": ("teacher_test", "ndcg@10"),
    # the run's own inference measurement (evaluate.inference_cost): the cost of rows whose shapes
    # `kdbench cost` does not measure (a sequential query: a forward over its input sequence)
    "run_throughput": ("cost", "throughput_users_per_s"),
    "run_latency_p50_ms": ("cost", "latency_p50_ms"),
}


def check_record(record: Any) -> str | None:
    """What is wrong with a run record's structure (a hand edit, a foreign file), or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, found {type(record).__name__}"
    for field in REQUIRED_TEXT:
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
    for key in (VALID_PRIMARY_METRIC, "wall_seconds"):
        if key in record and not _is_number(record[key]):
            return f"'{key}' is {record[key]!r}, not a number"
    if record["status"] == "ok" and not isinstance(record.get("test"), dict):
        return "a finished run without 'test' metrics"
    return _check_per_user(record.get("per_user") or {}, record.get("test_users") or {})


# What a JSON number (or null) parses to; `bool` is its own type, so `true` is not a number. Checking
# the set of types (`map` and `set` in C) is ~20x faster than a Python test per value, and verify
# checks tens of millions of per-user values.
_JSON_NUMBER_TYPES = frozenset({int, float, type(None)})


def _check_per_user(per_user: dict[str, Any], test_users: dict[str, Any]) -> str | None:
    lengths = set()
    for key, values in per_user.items():
        if not isinstance(values, list) or not set(map(type, values)) <= _JSON_NUMBER_TYPES:
            return f"'per_user.{key}' is not a list of numbers"
        lengths.add(len(values))
    if len(lengths) > 1:
        return "the 'per_user' lists have different lengths"
    counts = test_users.get("train_interactions")
    if counts is not None:
        if not isinstance(counts, list) or not set(map(type, counts)) <= {int} or min(counts, default=0) < 0:
            return "'test_users.train_interactions' is not a list of counts"
        if lengths and len(counts) not in lengths:
            return "'test_users.train_interactions' and the 'per_user' lists have different lengths"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


# -- the identity ---------------------------------------------------------------------------------
# Identity fields that say where the data was read from, not what it is. They are recorded but not
# compared: two checkouts holding the same dataset in different folders make the same cells (the
# data itself is compared by the records' `data_fingerprint`).
LOCATION_FIELDS = frozenset({"data_path"})


def resolved_hparams(cell) -> dict[str, Any]:
    """The strategy's defaults updated by the cell's overrides ({} for the teacher row)."""
    if cell.is_teacher:
        return {}
    return STRATEGIES.get(cell.strategy).resolve_hparams(dict(cell.hparams))


def identity(cell, device: str) -> dict[str, Any]:
    """A cell's `config`: everything besides its address and data that determines its record."""
    identity = {
        "train": (cell.teacher_settings if cell.is_teacher else cell.train).as_dict(),
        "teacher_train": cell.teacher_settings.as_dict(),
        "protocol": get_protocol(cell.protocol).identity(),
        "split_seed": cell.split_seed,
        "teacher_seed": cell.teacher_seed,
        "data_path": recorded_data_path(cell.dataset, cell.data_path),  # a location: see datasets.location
        "device": device,
        "threads": cell.threads,
    }
    if not cell.is_teacher:
        identity["hparams"] = resolved_hparams(cell)
        identity["strategy_code"] = strategy_code(cell.strategy)
    if is_file_teacher(cell.teacher):  # its content: a changed file makes the cell's runs stale
        identity["teacher_file"] = cell.teacher.identity()
    return identity | data_share_identity(cell)


def data_share_identity(cell) -> dict[str, Any]:
    """`{"data_share": {"share", "seed"}}` for a cell trained on a share of its training split
    (`kdbench.run.subsample`), {} for the whole split: cells made before shares existed keep their identity."""
    share = getattr(cell, "data_share", 1.0)
    if share == 1.0:
        return {}
    return {"data_share": {"share": float(share), "seed": int(cell.subsample_seed)}}


def identity_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The identity fields, locations aside, in which a stored `config` differs from `current`; a
    stored `config` that is not a mapping (a damaged file) differs as a whole."""
    if not isinstance(stored, dict):
        return [f"config (stored as {type(stored).__name__}, not a mapping)"]
    return sorted(key for key in set(current) | set(stored)
                  if key not in LOCATION_FIELDS and current.get(key) != stored.get(key))


def stale_fields(cell, config: dict[str, Any]) -> list[str]:
    """The identity fields in which a stored record's `config` differs from what the current code
    gives its cell (empty: the record is current)."""
    return identity_differences(config, json.loads(json.dumps(identity(cell, str(config.get("device", "cpu"))))))


# Sections of one number per test user (hundreds of thousands on a real catalogue): what a summary
# of the run (the page's detail view) leaves out.
PER_USER_SECTIONS = ("per_user", "test_users")


def without_per_user(record: RunRecord) -> RunRecord:
    """The record without its `PER_USER_SECTIONS` (a shallow copy; a few KB instead of MBs)."""
    return {key: value for key, value in record.items() if key not in PER_USER_SECTIONS}  # type: ignore[return-value]


def missing_sections(record: RunRecord) -> list[str]:
    """The `CURRENT_SECTIONS` a finished record lacks (a failed one holds none of them)."""
    if record.get("status") != "ok":
        return []
    return [section for section in CURRENT_SECTIONS if section not in record]


def is_current(record: RunRecord, cell, device: str, fingerprint: Callable[[], str]) -> bool:
    """Whether a record at the cell's address was made with the cell's identity: the same `config`,
    locations aside, the same data (`fingerprint()` is asked only when the record holds one), and
    every section the current writer adds (`missing_sections`)."""
    current = json.loads(json.dumps(identity(cell, device)))
    if identity_differences(record.get("config") or {}, current) or missing_sections(record):
        return False
    stored = record.get("data_fingerprint")
    return stored is None or stored == fingerprint()


def teacher_identity(cell, fingerprint: str) -> dict[str, Any]:
    """What determines a cell's teacher: the fields its cache key hashes (`checkpoints.cache_key`)."""
    return {
        "dataset": cell.dataset,
        "data_fingerprint": fingerprint,
        "protocol": get_protocol(cell.protocol).identity(),
        "split_seed": cell.split_seed,
        "model": str(cell.teacher),
        "model_config": cell.teacher.size_overrides(),
        "seed": cell.teacher_seed,
        "train": cell.teacher_settings.as_dict(),
    } | data_share_identity(cell)


# -- writing --------------------------------------------------------------------------------------
def base_record(cell, device: str) -> RunRecord:
    """The fields every record of `cell` holds, finished or failed."""
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


def failed_record(cell, device: str, error: str) -> RunRecord:
    return base_record(cell, device) | {"status": "failed", "error": error}


def environment(threads: int) -> dict[str, str]:
    import recbole
    import torch

    from kdbench.training.heap import allocator

    from kdbench import __version__

    return {
        "kdbench": __version__,
        "recbole": recbole.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "threads": str(threads),
        "allocator": allocator(),  # kdbench.training.heap (absent from runs made before 2026-12-07)
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- reading and the store ------------------------------------------------------------------------
def read_record(path: str | Path, advice: str = "") -> RunRecord:
    """A run record from any file (a copy outside results/ too), checked."""
    record = read_mapping(path, advice)
    problem = check_record(record)
    if problem:
        raise DamagedFile(path, problem, advice)
    return record


class RunStore:
    """The records under `<results>/runs/`, by address."""

    def __init__(self, results_dir: str | Path):
        self.root = Path(results_dir)
        self.runs = self.root / "runs"

    def file(self, address: Address) -> Path:
        return self.runs / address.relative_path()

    def find(self, address: Address) -> RunRecord | None:
        """The record stored at `address`, None if there is none, `DamagedFile` if it is damaged."""
        path = self.file(address)
        return self.load(path) if path.exists() else None

    def put(self, address: Address, record: RunRecord, log: str = "") -> Path:
        """Write the record (and its log beside it), each atomically."""
        path = self.file(address)
        if log:
            atomic.write_text(path.with_suffix(".log"), log)
        atomic.write_json(path, record)
        return path

    def load(self, path: Path) -> RunRecord:
        """A run record from its file, checked and found where its fields put it."""
        record = read_mapping(path, ADVICE)
        problem = check_record(record)
        if problem is None:
            expected = self.file(Address.of(record))
            if expected.resolve() != Path(path).resolve():
                problem = f"its fields place it at {expected}, not here"
        if problem:
            raise DamagedFile(path, problem, ADVICE)
        return record

    # an address spelled out field by field (tests, scripts)
    def path(self, dataset: str, pairing: str, label: str, seed: int, protocol: str | None = None) -> Path:
        return self.file(Address(dataset, pairing, label, seed, protocol or DEFAULT_PROTOCOL))

    def read(self, dataset: str, pairing: str, label: str, seed: int,
             protocol: str | None = None) -> RunRecord | None:
        return self.find(Address(dataset, pairing, label, seed, protocol or DEFAULT_PROTOCOL))

    def write(self, dataset: str, pairing: str, label: str, seed: int, record: RunRecord,
              protocol: str | None = None) -> Path:
        return self.put(Address(dataset, pairing, label, seed, protocol or DEFAULT_PROTOCOL), record)

    def clear_partial_writes(self, in_use: Callable[[Path], bool] = lambda tmp: False) -> int:
        """Remove temp files left by a write that was killed before its rename; they never count.
        `in_use(tmp)` spares the temp files of a write another process is making now."""
        stale = [tmp for tmp in self.runs.rglob(".*.tmp") if not in_use(tmp)] if self.runs.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def files(self) -> list[Path]:
        """Every stored run file, in a stable order."""
        return sorted(self.runs.glob("*/*/*/seed*.json"))

    def records(self) -> Iterator[RunRecord]:
        """Every stored run record, in a stable order; `DamagedFile` at the first damaged one."""
        for path in self.files():
            yield self.load(path)
