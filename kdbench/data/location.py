"""Where catalogue datasets live, and what a run record may say about where its data was.

The data folder is `$KDBENCH_DATA` when set, else `$XDG_CACHE_HOME/kdbench/data`, else
`~/.cache/kdbench/data`: data the user fetched once for every checkout, like a model cache. A fetched
dataset NAME is `<folder>/NAME/NAME.inter` (RecBole's layout), read without `--data-path`.

A run record names its data by dataset name and `data_fingerprint` (the hash of the split); the
folder it was read from is a location, not part of what the run is. `recorded_data_path` keeps the
absolute folder of the machine that ran it out of the record of a catalogue dataset.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from kdbench.data.catalogue import CATALOGUE

DATA_ENV = "KDBENCH_DATA"


def default_data_dir() -> Path:
    """The folder `data fetch` writes to and runs read catalogue datasets from by default."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "kdbench" / "data"


def data_dir(data_path: str | os.PathLike | None) -> Path:
    """The data folder a command uses: `--data-path` when given, else the default one."""
    return Path(data_path) if data_path is not None else default_data_dir()


def atomic_candidates(name: str, data_path: str | os.PathLike | None) -> list[Path]:
    """Where `name`'s interaction file may be: `DIR/NAME/NAME.inter`, then `DIR/NAME.inter` (as
    `loading.dataset_root` looks for a user folder)."""
    root = data_dir(data_path)
    return [root / name / f"{name}.inter", root / f"{name}.inter"]


def is_present(name: str, data_path: str | os.PathLike | None) -> bool:
    return any(path.is_file() for path in atomic_candidates(name, data_path))


def catalogue_root(name: str) -> Path | None:
    """The folder holding a catalogue dataset's atomic file in the default data folder; None for a
    name outside the catalogue or a dataset not fetched yet (the caller says how to fetch it)."""
    if name not in CATALOGUE:
        return None
    for path in atomic_candidates(name, None):
        if path.is_file():
            return path.parent
    return None


def fetch_command(name: str, data_path: str | os.PathLike | None = None) -> str:
    """The command that fetches `name` into the folder a run would read it from."""
    where = f" --data-path {shlex.quote(str(data_path))}" if data_path is not None else ""
    return f"python -m kdbench data fetch {name}{where}"


def not_present(name: str, data_path: str | os.PathLike | None) -> str:
    """One line: a catalogue dataset is not in its folder, and the command that fetches it."""
    return f"dataset '{name}' is not in {data_dir(data_path)}: fetch it with `{fetch_command(name, data_path)}`"


def recorded_data_path(dataset: str, data_path: str | None) -> str | None:
    """What a record stores as `config.data_path` (and what a stored one is read back as).

    A catalogue dataset is named by its name and the record's data fingerprint: an absolute folder
    (one machine's) is left out, and such a run is found again in the data folder (or `--data-path`).
    A relative folder (a suite's `data`) is kept; so is the folder of a dataset outside the catalogue,
    the only way to find the user's own data again."""
    if dataset in CATALOGUE and data_path is not None and Path(data_path).expanduser().is_absolute():
        return None
    return data_path
