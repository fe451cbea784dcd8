"""`python -m kdbench reproduce RUN.json`: run one stored run again from its record and compare.

The cell is rebuilt from the record's address and `config` (`cells.cell_from_record`), run in
a scratch results folder (the stored file is never touched) with its teacher from the cache or,
with `retrain_teacher`, trained again in a scratch cache. What is compared is what the seed
determines: the metrics, per-user values, the validation curve and best epoch, the parameter
count; never timings.

Bit-identity holds on the CPU model that made the run. Another CPU model runs other float kernels
(vector widths, fused multiply-add), so a retrained model differs in the last digits and, where two
items' scores were nearly tied, a user's ranking flips: the reproduction is then `equivalent` when
every aggregate test metric is within `CROSS_CPU_TOLERANCE` (relative) of the stored one.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kdbench.run.cells import Cell, cell_from_record
from kdbench.errors import KdbenchError
from kdbench.run.record import METRICS, TEACHER  # what check_reproducible requires of a finished run
from kdbench.store.paths import check_file
from kdbench.run.record import (ADDED_SECTIONS, SEED_DETERMINED_FIELDS, SEED_DETERMINED_SECTIONS, RunRecord, cpu_model,
                            read_record, stale_fields)

# Largest relative difference of an aggregate test metric accepted when the run is reproduced on
# another CPU model; measured: a BPR-64 teacher made on an AMD EPYC and retrained on an Intel Xeon
# differs by 3e-6 in NDCG@20 (one of 943 users' rankings flips).
CROSS_CPU_TOLERANCE = 1e-3


@dataclass
class Reproduction:
    cell: Cell
    stored: RunRecord
    reproduced: RunRecord
    stale: list[str]  # identity fields in which the stored record differs from the current code
    teacher_source: str
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences

    @property
    def stored_cpu(self) -> str:
        return str((self.stored.get("environment") or {}).get("cpu", "unknown"))

    @property
    def other_cpu(self) -> bool:
        return self.stored_cpu != cpu_model()

    @property
    def largest_test_difference(self) -> float:
        """max over the aggregate test metrics of |reproduced - stored| / |stored|."""
        stored, reproduced = self.stored.get("test") or {}, self.reproduced.get("test") or {}
        if set(stored) != set(reproduced):
            return math.inf
        return max((abs(reproduced[key] - value) / max(abs(value), 1e-12) for key, value in stored.items()),
                   default=0.0)

    @property
    def equivalent(self) -> bool:
        """Not bit-identical, but made on another CPU model and within its float tolerance."""
        status_same = self.stored.get("status") == self.reproduced.get("status")
        return (not self.identical and self.other_cpu and status_same
                and self.largest_test_difference <= CROSS_CPU_TOLERANCE)


def load_run(path: str | Path) -> RunRecord:
    """A run record from any path (a copy outside results/ too), checked."""
    return read_record(check_file(path, "run file"))


# What a finished run must hold for a reproduction to compare it: the sections and fields beyond
# the schema (`check_record` lets older formats and failed runs leave them out).
_FINISHED_TRAINING = ("best_epoch", "epochs_run", "valid_curve")


def check_reproducible(record: RunRecord) -> str | None:
    """What keeps a (schema-checked) record whose cell could be rebuilt (`cells.cell_from_record`:
    its `config`) from being reproduced, or None: a negative seed, and, for a finished run, a missing
    test metric, `valid_ndcg@10` or teacher metric (a student's row) or one outside [0, 1] (NaN and
    inf included), a parameter count that is not a count, or a missing `training` summary or
    `per_user` block (a value in [0, 1] per test user and metric)."""
    if record["seed"] < 0:
        return f"'seed' is {record['seed']}, a seed is >= 0"
    config = record.get("config")
    teacher_seed = config.get("teacher_seed", 0) if isinstance(config, dict) else 0
    if not isinstance(teacher_seed, int) or isinstance(teacher_seed, bool) or teacher_seed < 0:
        return f"'config.teacher_seed' is {teacher_seed!r}, a seed is >= 0"
    if record["status"] != "ok":
        return None  # a failed run is reproduced as its status and error
    # a record without `teacher_test` (a size sweep's, a teacher file's) is reproduced without it, and a
    # strategy that needs a teacher then shows it as "missing in the stored run"
    sections = ("test",) if record["strategy"] == TEACHER or "teacher_test" not in record else ("test", "teacher_test")
    for section in sections:
        for metric in METRICS:
            problem = _not_finite(f"{section}.{metric}", (record.get(section) or {}).get(metric, "missing"))
            if problem:
                return problem
    problem = _not_finite("valid_ndcg@10", record.get("valid_ndcg@10", "missing"))
    if problem:
        return problem
    params = (record.get("cost") or {}).get("params", "missing")
    if isinstance(params, bool) or not isinstance(params, int) or params < 0:
        return f"'cost.params' is {params!r}, not a count of parameters"
    training = record.get("training")
    if not isinstance(training, dict) or any(key not in training for key in _FINISHED_TRAINING):
        return f"'training' is missing or lacks {', '.join(_FINISHED_TRAINING)}"
    return _check_per_user(record.get("per_user"))


def _check_per_user(per_user: Any) -> str | None:
    if not isinstance(per_user, dict) or not per_user.get("user_ids"):
        return "'per_user' is missing or holds no test users"
    if not isinstance(per_user["user_ids"], list):
        return "'per_user.user_ids' is not a list"
    missing = [metric for metric in METRICS if metric not in per_user]
    if missing:
        return f"'per_user' lacks {', '.join(missing)}"
    for metric in METRICS:
        bad = next((v for v in per_user[metric] if _not_finite("", v)), None)
        if bad is not None:
            return f"'per_user.{metric}' holds {bad!r}, {_not_finite('', bad).split(', ', 1)[1]}"
    return None


def _not_finite(name: str, value: Any) -> str | None:
    """What is wrong with a metric value (NDCG and recall lie in [0, 1]), or None."""
    if isinstance(value, str) and value == "missing":
        return f"'{name}' is missing"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"'{name}' is {value!r}, not a finite number"
    if not 0 <= value <= 1:
        return f"'{name}' is {value!r}, not a value in [0, 1]"
    return None


def reproduce(path: str | Path, cache_dir: str | Path, retrain_teacher: bool = False,
              heal_cache: bool = True, plugins: tuple[str, ...] = (),
              log: Callable[[str], None] = lambda message: None, data_path: str | None = None) -> Reproduction:
    """`data_path`: where the run's dataset is on this machine (a record keeps no absolute folder:
    without it, a catalogue dataset is read from the data folder, `kdbench.data.location`)."""
    from dataclasses import replace

    from kdbench.run.runner import Runner, validate_cells

    stored = load_run(path)
    cell = cell_from_record(stored, f"run file {path}")
    if data_path is not None:
        cell = replace(cell, data_path=data_path)
    device = str(stored["config"].get("device", "cpu"))
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise KdbenchError(f"run file {path} was made on {device}; this machine has no CUDA device")
    validate_cells([cell], device)
    problem = check_reproducible(stored)  # the whole record is checked before anything runs
    if problem:
        raise KdbenchError(f"run file {path} cannot be reproduced: {problem}; restore the file from where "
                           f"it was made (nothing was run)")
    stale = stale_fields(cell, stored["config"])
    with tempfile.TemporaryDirectory(prefix="kdbench-reproduce-") as scratch:
        cache = Path(scratch) / "cache" if retrain_teacher else Path(cache_dir)
        runner = Runner(Path(scratch) / "results", cache, device, force=True, log=log, plugins=plugins,
                        heal_cache=heal_cache, nominal_teachers="teacher_test" in stored)
        runner.run(cell)
        reproduced = runner.store.find(cell.address)  # as it would be stored
        source = runner.teacher_sources.get(runner.teacher_key(cell), "not needed")
    result = Reproduction(cell, stored, reproduced, stale, source)
    result.differences = differences(stored, reproduced)
    return result


def differences(stored: dict[str, Any], reproduced: dict[str, Any]) -> list[str]:
    """One line per compared value that differs: `key: stored X, reproduced Y`."""
    lines = []
    for section in SEED_DETERMINED_SECTIONS:
        if section in ADDED_SECTIONS and section not in stored:
            continue  # a run made before the section existed
        old, new = stored.get(section) or {}, reproduced.get(section) or {}
        for key in sorted(set(old) | set(new)):
            if key not in old or key not in new:
                lines.append(f"{section}.{key}: {'missing in the stored run' if key not in old else 'not reproduced'}")
            elif isinstance(old[key], list) or isinstance(new[key], list):
                lines.extend(_list_difference(f"{section}.{key}", old[key], new[key]))
            elif not _same(old[key], new[key]):
                lines.append(f"{section}.{key}: stored {old[key]!r}, reproduced {new[key]!r}")
    for dotted in SEED_DETERMINED_FIELDS:
        old, new = _get(stored, dotted), _get(reproduced, dotted)
        if isinstance(old, list) or isinstance(new, list):
            lines.extend(_list_difference(dotted, old or [], new or []))
        elif not _same(old, new):
            lines.append(f"{dotted}: stored {old!r}, reproduced {new!r}")
    return lines


def _get(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _list_difference(name: str, old: list, new: list) -> list[str]:
    if len(old) != len(new):
        return [f"{name}: {len(old)} stored values, {len(new)} reproduced"]
    differing = [i for i, (a, b) in enumerate(zip(old, new)) if not _same(a, b)]
    if not differing:
        return []
    first = differing[0]
    return [f"{name}: {len(differing)} of {len(old)} values differ (first at {first}: stored {old[first]!r}, "
            f"reproduced {new[first]!r})"]
