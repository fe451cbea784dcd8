"""Where run records live: one JSON file per cell under `<results>/runs/`, written atomically.

Layout: runs/<dataset>/<teacher>_to_<student>/<strategy label>/seed<k>.json (and a .log beside it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from kdbench import atomic

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,@+-]")


def run_label(strategy: str, hparams: dict[str, Any]) -> str:
    """`rrd`, or `rrd@K=20,T=5` when hyperparameters are overridden (a different cell)."""
    if not hparams:
        return strategy
    return strategy + "@" + ",".join(f"{k}={hparams[k]}" for k in sorted(hparams))


def safe_name(text: str) -> str:
    """A label or pairing as a file name: `BPR:64->BPR:5` -> `BPR-64_to_BPR-5`."""
    return _UNSAFE.sub("-", text.replace("->", "_to_").replace(":", "-"))


class RunStore:
    def __init__(self, results_dir: str | Path):
        self.root = Path(results_dir)
        self.runs = self.root / "runs"

    def path(self, dataset: str, pairing: str, label: str, seed: int) -> Path:
        return self.runs / safe_name(dataset) / safe_name(pairing) / safe_name(label) / f"seed{seed}.json"

    def read(self, dataset: str, pairing: str, label: str, seed: int) -> dict[str, Any] | None:
        path = self.path(dataset, pairing, label, seed)
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def write(self, dataset: str, pairing: str, label: str, seed: int, record: dict[str, Any]) -> Path:
        path = self.path(dataset, pairing, label, seed)
        atomic.write_json(path, record)
        return path

    def clear_partial_writes(self) -> int:
        """Remove temp files left by a write that was killed before its rename; they never count."""
        stale = list(self.runs.rglob(".*.tmp")) if self.runs.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored run record, in a stable order."""
        for path in sorted(self.runs.glob("*/*/*/seed*.json")):
            yield json.loads(path.read_text())
