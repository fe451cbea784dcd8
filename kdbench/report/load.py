"""Loading: the stored files a report reads, as flat tables, one row per run, study or measurement.

A damaged file stops here (`DamagedFile`, naming it), before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from kdbench.evaluation.beyond import BEYOND_METRICS
from kdbench.run.inference_cost import check_cost
from kdbench.evaluation.metrics import PRIMARY_METRIC
from kdbench.report.forked import forked_map, worker_count
from kdbench.run.record import (
    DEFAULTS, FLAT_FIELDS, METRICS, RunRecord, RunStore, dataset_label, record_protocol, without_per_user,
)
from kdbench.store.reading import TUNING_SUMMARY_ADVICE, DamagedFile, read_mapping

# One row per stored run: the record's flat fields (`record.FLAT_FIELDS`), and the beyond-accuracy
# metrics on the test users' top 10 (kdbench.evaluation.beyond; NaN in records before issue 27).
RUN_FIELDS = {**FLAT_FIELDS, **{metric: ("beyond", metric) for metric in BEYOND_METRICS}}
ENVIRONMENT = ("kdbench", "recbole", "torch", "python", "cpu", "gpu", "threads", "allocator")
# what a record made before the field existed ran with (`kdbench.training.heap`: runs before 2026-12-07)
ENVIRONMENT_BEFORE = {"allocator": "default"}

COST_COLUMNS = ("dataset", "teacher", "catalogue", "synthetic", "n_items", "n_users", "kind", "model", "dim",
                "params", "size_bytes", "batch_users", "median_s", "q25_s", "q75_s", "min_s", "max_s", "n")
COST_ADVICE = "restore it, or run `python -m kdbench cost` again to measure it anew"
TUNING_COLUMNS = ["dataset", "pairing", "strategy", "trials_counted", "budget", "budget_unit", "epochs_spent",
                  "compute_seconds", "threads"]


# Reading the run files is most of a report's time on a real catalogue (megabytes of per-user JSON
# a record, 300 MB for 1,250 runs); above this many bytes it is split over worker processes.
PARALLEL_READ_BYTES = 64 * 2**20
RUN_COLUMNS = ["dataset", "teacher", "student", "pairing", "model", "variant", "strategy", "method", "family",
               "seed", "status", "error", "created", "wall_seconds", *METRICS, *RUN_FIELDS,
               "per_user", "train_interactions", "teacher_trained_further", "ensemble_teachers",
               "teacher_learning_rate", "teacher_weight_decay", *(f"env_{k}" for k in ENVIRONMENT)]


@dataclass(frozen=True)
class StoredRuns:
    """What `read_runs` read: the table of runs (`load_runs`), each record without its per-user
    sections (`without_per_user`: what the web page shows of a run) and what `inspect` made of each
    whole record, both by file in the table's order."""

    table: pd.DataFrame
    records: tuple[tuple[Path, RunRecord], ...]
    inspected: tuple[Any, ...]


def load_runs(runs_dir: str | Path) -> pd.DataFrame:
    """Every stored run under `runs_dir/runs/`, one row each, failed ones included.

    `status` is 'ok' or 'failed' (with `error`); a failed run has no metrics or costs (NaN).
    `per_user` holds the run's per-user primary metric as a Series indexed by user id,
    `train_interactions` the test users' training interactions likewise (None in older records).
    `strategy` is the run's label (`rrd`, or `rrd@K=20` for overridden hyperparameters), the unit
    the leaderboard compares; `method` is the bare strategy name.
    """
    return read_runs(runs_dir).table


def read_runs(runs_dir: str | Path, inspect: Callable[[Path, RunRecord], Any] | None = None,
              workers: int | None = None) -> StoredRuns:
    """`load_runs`' table, and what else a reader takes from the whole records, each read once.

    `inspect(path, record)` sees each whole record (checked, `RunStore.load`) where it is read, and
    its result (picklable) comes back in `inspected`. The files are read by `workers` processes
    (None: `forked.worker_count` of their bytes against `PARALLEL_READ_BYTES`), each a run of
    consecutive files. A damaged file stops the read (`DamagedFile`, naming it), whichever process
    found it.
    """
    store = RunStore(runs_dir)
    paths = store.files()
    sizes = [path.stat().st_size for path in paths]
    readers = worker_count(sum(sizes), PARALLEL_READ_BYTES) if workers is None else workers
    # several chunks a reader, so that one slow chunk keeps the others waiting less
    chunks = _contiguous_chunks(paths, sizes, 4 * readers) if readers > 1 else [paths]
    read = [item for part in forked_map(_read_files, chunks, readers, shared=(Path(runs_dir), inspect))
            for item in part]
    return StoredRuns(table=pd.DataFrame([row for row, _, _ in read], columns=RUN_COLUMNS),
                      records=tuple((path, slim) for path, (_, slim, _) in zip(paths, read)),
                      inspected=tuple(found for _, _, found in read) if inspect is not None else ())


def _read_files(shared: tuple[Path, Callable[[Path, RunRecord], Any] | None], paths: list[Path]
                ) -> list[tuple[dict[str, Any], RunRecord, Any]]:
    runs_dir, inspect = shared
    store = RunStore(runs_dir)
    read = []
    for path in paths:
        record = store.load(path)
        read.append((_flatten(record), without_per_user(record), inspect(path, record) if inspect else None))
    return read


def _contiguous_chunks(paths: list[Path], sizes: list[int], count: int) -> list[list[Path]]:
    """`paths` cut, in order, into at most `count` runs of about equal bytes: a file goes to the
    chunk its first byte falls in when the total is cut into `count` equal parts."""
    starts = np.cumsum([0, *sizes[:-1]])
    chunks: dict[int, list[Path]] = {}
    for path, part in zip(paths, starts * count // max(sum(sizes), 1)):
        chunks.setdefault(int(part), []).append(path)
    return list(chunks.values())


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    ok = record.get("status") == "ok"
    row = {
        # `ml-100k`, or `citeulike-t@ordered` under another protocol: its own tables
        "dataset": dataset_label(record.get("dataset"), record_protocol(record)),
        "teacher": record.get("teacher"),
        "student": record.get("student"),
        "pairing": record.get("pairing") or f"{record.get('teacher')}->{record.get('student')}",
        "model": record.get("model"),
        "strategy": record.get("label") or record.get("strategy"),
        "method": record.get("strategy"),
        "variant": record.get("variant") or DEFAULTS,
        "family": record.get("family"),
        "seed": record.get("seed"),
        "status": "ok" if ok else "failed",
        "error": record.get("error"),
        "created": record.get("created"),
        "wall_seconds": record.get("wall_seconds"),
    }
    test = record.get("test") or {}
    for metric in METRICS:
        row[metric] = float(test[metric]) if ok and metric in test else math.nan
    for column, (section, field) in RUN_FIELDS.items():
        value = (record.get(section) or {}).get(field)
        row[column] = value if ok and value is not None else math.nan
    per_user = record.get("per_user") or {}
    # through numpy: pandas converts a list of numbers element by element (4x slower on 22,363 users);
    # `check_record` made every per-user list numbers
    users = pd.Index(np.asarray(per_user["user_ids"])) if ok and "user_ids" in per_user else None
    row["per_user"] = (pd.Series(np.asarray(per_user[PRIMARY_METRIC], dtype=float), index=users)
                       if users is not None and PRIMARY_METRIC in per_user else None)
    counts = (record.get("test_users") or {}).get("train_interactions")
    row["train_interactions"] = (pd.Series(np.asarray(counts, dtype=float), index=users)
                                 if users is not None and counts is not None else None)
    row["teacher_trained_further"] = bool(record.get("teacher_trained_further", False))
    row["ensemble_teachers"] = ensemble_teachers(record) if ok else ()
    teacher_train = (record.get("config") or {}).get("teacher_train") or {}
    for knob in ("learning_rate", "weight_decay"):  # the teacher's settings, stated in the header
        row[f"teacher_{knob}"] = teacher_train.get(knob)
    environment = record.get("environment") or {}
    for key in ENVIRONMENT:
        row[f"env_{key}"] = environment.get(key, ENVIRONMENT_BEFORE.get(key) if environment else None)
    return row


def ensemble_teachers(record: dict[str, Any]) -> tuple[tuple[str, float | None, float | None], ...]:
    """The teachers an ensemble strategy (HetComp) trains beyond the pairing's own (the record's
    `ensemble` after its first member, the pairing's teacher): (cache key, wall seconds, threads) of
    each one's training; seconds and threads None in records made before they were recorded
    (2026-12-08). () for a strategy without an ensemble."""
    return tuple((str(member.get("key")), _number(member.get("wall_seconds")), _number(member.get("threads")))
                 for member in (record.get("ensemble") or [])[1:] if isinstance(member, dict))


def _number(value: Any) -> float | None:
    """A recorded figure as a number (threads are recorded as text), None where absent or not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def load_tuning(runs_dir: str | Path) -> pd.DataFrame:
    """The tuning studies' summaries beside the runs (`tuning/*/*/*.json`), one row each; `threads`
    is each trial's torch threads, from the study's identity."""
    root = Path(runs_dir) / "tuning"
    rows = [read_mapping(p, TUNING_SUMMARY_ADVICE) for p in sorted(root.glob("*/*/*.json"))] if root.is_dir() else []
    return pd.DataFrame([{k: r.get(k) for k in TUNING_COLUMNS} | {"threads": (r.get("identity") or {}).get("threads")}
                         for r in rows], columns=TUNING_COLUMNS)


def load_costs(runs_dir: str | Path) -> pd.DataFrame:
    """Every inference-cost measurement under `runs_dir/cost/` (`kdbench cost`), one row each.

    `dataset` and `teacher` name the sitting (a teacher and its students, measured together)."""
    root = Path(runs_dir) / "cost"
    rows = []
    for path in sorted(root.glob("*/*.json")) if root.is_dir() else []:
        payload = read_mapping(path, COST_ADVICE)
        problem = check_cost(payload)
        if problem:
            raise DamagedFile(path, problem, COST_ADVICE)
        for measurement in payload["measurements"]:
            rows.append({"dataset": payload["dataset"], "teacher": payload["teacher"]}
                        | {k: measurement.get(k) for k in COST_COLUMNS[2:]})
    frame = pd.DataFrame(rows, columns=list(COST_COLUMNS))
    frame["size_bytes"] = pd.to_numeric(frame["size_bytes"], errors="coerce")  # absent before issue 28: NaN
    return frame
