"""What a tuning trial keeps while it trains, so that a trial killed with its worker (a working
session that ends, a signal) continues where it stopped when its study is opened again, instead of
being asked anew and trained from epoch 1.

A trial trains its tuning seeds one after the other. Its folder (`<cache>/resume/trials/<key>`,
named by everything that determines the trial: the study's identity, the trial's parameters, the
finished trials its pruner compares against, the epochs it may spend) holds
- `progress.json`: each finished seed's best validation NDCG@10, epochs and seconds, the first
  seed's best-so-far curve (what the pruner was shown), and, once the trial ended, its outcome;
- `seed<i>.pt`: the seed being trained, at its last validated epoch (`training.resume`).

The driver opening a study finds the killed trial running, marks it failed (interrupted: it spends
no budget) and enqueues its parameters again (`studies.open_study`); the new trial has the same key
and takes the folder over. The driver removes the folder once it recorded the trial's outcome.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kdbench.store import atomic
from kdbench.training.resume import EpochCheckpoint

TRIALS_FOLDER = Path("resume") / "trials"  # under the cache folder


class TrialProgress:
    """The kept progress of one trial (`key`) in `folder`; a folder of another trial is ignored."""

    def __init__(self, folder: str | Path, key: str):
        self.folder = Path(folder)
        self.key = key
        self.seeds: list[dict[str, float]] = []  # per finished seed: value, epochs, seconds
        self.curve: list[tuple[int, float]] = []  # the first seed's best so far, once it finished
        self.outcome: dict[str, Any] | None = None
        stored = self._read()
        if stored is not None:
            self.seeds = list(stored["seeds"])
            self.curve = [(int(epoch), float(value)) for epoch, value in stored["curve"]]
            self.outcome = stored.get("outcome")

    @property
    def path(self) -> Path:
        return self.folder / "progress.json"

    def seed_checkpoint(self, position: int) -> EpochCheckpoint:
        """The epoch checkpoint of the trial's `position`-th tuning seed."""
        return EpochCheckpoint(self.folder / f"seed{position}.pt", f"{self.key}/{position}")

    def seed_done(self, value: float, epochs: int, seconds: float, curve: list[tuple[int, float]]) -> None:
        self.seeds.append({"value": value, "epochs": epochs, "seconds": seconds})
        if len(self.seeds) == 1:
            self.curve = list(curve)
        self._write()

    def ended(self, outcome: dict[str, Any]) -> None:
        self.outcome = outcome
        self._write()

    def _read(self) -> dict[str, Any] | None:
        try:
            stored = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(stored, dict) or stored.get("key") != self.key:
            return None
        return stored

    def _write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.path, {"key": self.key, "seeds": self.seeds, "curve": [list(p) for p in self.curve],
                                      **({"outcome": self.outcome} if self.outcome is not None else {})})


def trial_folder(work_dir: str | Path, key: str) -> Path:
    return Path(work_dir) / TRIALS_FOLDER / key[:32]


def discard(work_dir: str | Path, key: str | None) -> None:
    """Remove a trial's kept progress (its outcome is recorded in the study)."""
    if key is not None:
        shutil.rmtree(trial_folder(work_dir, key), ignore_errors=True)
