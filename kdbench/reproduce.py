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

from kdbench.cells import Cell, cell_from_record
from kdbench.errors import KdbenchError
from kdbench.paths import check_file
from kdbench.record import (ADDED_SECTIONS, SEED_DETERMINED_FIELDS, SEED_DETERMINED_SECTIONS, RunRecord, cpu_model,
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


def reproduce(path: str | Path, cache_dir: str | Path, retrain_teacher: bool = False,
              heal_cache: bool = True, plugins: tuple[str, ...] = (),
              log: Callable[[str], None] = lambda message: None, data_path: str | None = None) -> Reproduction:
    """`data_path`: where the run's dataset is on this machine (a record keeps no absolute folder:
    without it, a catalogue dataset is read from the data folder, `kdbench.datasets.location`)."""
    from dataclasses import replace

    from kdbench.runner import Runner, validate_cells

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
    stale = stale_fields(cell, stored["config"])
    with tempfile.TemporaryDirectory(prefix="kdbench-reproduce-") as scratch:
        cache = Path(scratch) / "cache" if retrain_teacher else Path(cache_dir)
        runner = Runner(Path(scratch) / "results", cache, device, force=True, log=log, plugins=plugins,
                        heal_cache=heal_cache)
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
