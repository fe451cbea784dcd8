"""RecBole bridge: datasets, atomic files, configs, and the split data a run trains on.

Every evaluation protocol ranks all items (full ranking), computes Recall and NDCG at 10 and 20 with
RecBole's evaluator and selects models on validation NDCG@10 (`PROTOCOL`, the RecBole settings
every config starts from). The protocols themselves (how each user's interactions are split and
what is masked at test time) belong to the backbone families, which load their data through the
helpers here: `kdbench.families.general` (`random`, `ordered`, `ordered-mask-train`) and
`kdbench.families.sequential` (`leave-one-out`); `kdbench.families.load_data` dispatches.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp
import torch
import yaml

from kdbench.compat import kept_anomaly_mode
from kdbench.errors import KdbenchError, choices

BUNDLED_DATASETS = ("ml-100k",)
TOPK = (10, 20)
VALID_METRIC = "ndcg@10"
DEFAULT_SPLIT_SEED = 2020
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")

PROTOCOL: dict[str, Any] = {
    "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"},
    "metrics": ["Recall", "NDCG"],
    "topk": list(TOPK),
    "valid_metric": "NDCG@10",
    "valid_metric_bigger": True,
    "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0,
                              "dynamic": False, "candidate_num": 0},
}

TIME_FIELD = "timestamp"  # RecBole's default time column: the `ordered` split follows it when present


# Full-sort evaluation batches count score cells for general models: users per batch =
# eval_batch_size // n_items. 2**22 cells (16 MiB of float32) keeps batches few and memory bounded.
EVAL_BATCH_CELLS = 2**22


@contextmanager
def isolated_argv() -> Iterator[None]:
    """RecBole's Config parses sys.argv (`--key=value` overrides the config): hide ours from it."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


@lru_cache(maxsize=1)
def downloadable_datasets() -> tuple[str, ...]:
    """Dataset names RecBole knows how to download (needs internet)."""
    import recbole

    url_file = Path(recbole.__file__).parent / "properties" / "dataset" / "url.yaml"
    return tuple(sorted(yaml.safe_load(url_file.read_text())))


@lru_cache(maxsize=1)
def bundled_dataset_dir() -> Path:
    import recbole

    return Path(recbole.__file__).parent / "dataset_example" / "ml-100k"


def dataset_root(name: str, data_path: str | None) -> Path | None:
    """The folder that holds `<name>.inter`, or None where RecBole should fetch/bundle it.

    A user folder may hold the atomic files directly or in a `<name>/` subfolder (RecBole's layout).
    Without a folder, a catalogue dataset (`kdbench.data.catalogue`) is read from the data folder
    `data fetch` writes to (`kdbench.data.location`), or refused with the command that fetches it.
    """
    if data_path is None:
        from kdbench.data.catalogue import CATALOGUE
        from kdbench.data.location import catalogue_root, not_present

        if name in CATALOGUE:
            root = catalogue_root(name)
            if root is None:
                raise KdbenchError(not_present(name, None))
            return root
        return None
    root = Path(data_path)
    if not root.exists():
        raise KdbenchError(f"data path '{data_path}' does not exist")
    if not root.is_dir():
        raise KdbenchError(f"data path '{data_path}' is a file, not a folder: give the folder that holds '{name}.inter'")
    for candidate in (root / name, root):
        atomic_file = candidate / f"{name}.inter"
        if atomic_file.is_file():
            return candidate
        if atomic_file.exists():
            raise KdbenchError(f"'{atomic_file}' is not a regular file (a folder?): it must be the interaction file")
    from kdbench.data.catalogue import CATALOGUE
    from kdbench.data.location import fetch_command

    fetch = f"; fetch it with `{fetch_command(name, data_path)}`" if name in CATALOGUE else ""
    raise KdbenchError(
        f"no '{name}.inter' in '{data_path}' or '{root / name}': atomic files must be named after the dataset{fetch}"
    )


def check_dataset(name: str, data_path: str | None) -> None:
    """Fail early, with one line, on an unknown dataset or a malformed atomic file."""
    root = dataset_root(name, data_path)
    if root is not None:
        validate_atomic_file(root / f"{name}.inter")
        return
    if name in BUNDLED_DATASETS or name in downloadable_datasets():
        return
    raise KdbenchError(
        f"unknown dataset '{name}': bundled: {choices(BUNDLED_DATASETS)}; RecBole can download "
        f"{len(downloadable_datasets())} more (see `python -m kdbench list`); or give --data-path DIR "
        f"holding '{name}.inter' in RecBole atomic format"
    )


def validate_atomic_file(path: Path) -> None:
    """Check the header (`name:type` columns incl. user_id and item_id) and every row.

    A row with another number of fields than the header, or a non-numeric value in a float
    column, is named by its line number; so is a byte that is not UTF-8 text.
    """
    import pandas as pd

    text = _read_text(path)
    first_line = text.split("\n", 1)[0]
    if first_line.endswith("\r"):
        raise KdbenchError(f"malformed atomic file {path}: Windows line endings (CRLF); convert it to LF")
    header = first_line.split("\t")
    fields = {}
    for column in header:
        name, sep, kind = column.partition(":")
        if not sep or not name or kind not in ATOMIC_TYPES:
            raise KdbenchError(
                f"malformed atomic file {path}: header column '{column}' is not 'name:type' "
                f"with type one of {choices(ATOMIC_TYPES)}"
            )
        if name in fields:
            raise KdbenchError(f"malformed atomic file {path}: header names column '{name}' twice")
        fields[name] = kind
    for required in ("user_id", "item_id"):
        if required not in fields:
            raise KdbenchError(f"malformed atomic file {path}: header lacks a '{required}' column")
    lines = text.rstrip("\n").split("\n")[1:]
    if not lines:
        raise KdbenchError(f"malformed atomic file {path}: no interactions after the header")
    tabs = np.fromiter((line.count("\t") for line in lines), dtype=np.int64, count=len(lines))
    wrong = np.flatnonzero(tabs != len(header) - 1)
    if wrong.size:
        row = int(wrong[0])
        raise KdbenchError(
            f"malformed atomic file {path}: line {row + 2} has {tabs[row] + 1} fields, header has {len(header)}"
        )
    rows = pd.read_csv(path, sep="\t", header=0, names=list(fields), dtype=str, quoting=3,
                       keep_default_na=False, engine="c")
    for name, kind in fields.items():
        if kind != "float":
            continue
        values = rows[name]
        bad = pd.to_numeric(values.where(values != ""), errors="coerce").isna() & (values != "")
        if bad.any():
            index = int(bad.idxmax())
            raise KdbenchError(
                f"malformed atomic file {path}: line {index + 2}, column '{name}' is not a float: '{values[index]}'"
            )


def _read_text(path: Path) -> str:
    """The file as text, or one line saying why it is not UTF-8 text (RecBole reads UTF-8)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KdbenchError(f"cannot read atomic file {path}: {exc.strerror or exc}") from None
    if raw.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        raise KdbenchError(f"malformed atomic file {path}: it starts with a byte-order mark; "
                           f"save it as UTF-8 without BOM")
    if b"\0" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\0")) + 1
        raise KdbenchError(f"malformed atomic file {path}: a NUL byte on line {line}; it is binary, "
                           f"not tab-separated UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise KdbenchError(f"malformed atomic file {path}: line {line} is not UTF-8 text "
                           f"(byte {raw[exc.start]:#04x}); save it as UTF-8") from None


def atomic_columns(path: Path) -> list[str]:
    """The column names (without types) of an atomic file's header."""
    return [column.partition(":")[0] for column in _read_text(path).split("\n", 1)[0].split("\t")]


def dataset_size(name: str, data_path: str | None) -> tuple[int, int] | None:
    """(users, items) of a dataset's interaction file, counted without RecBole (RecBole adds one
    padding id to each); None where the file is not here yet (a dataset RecBole would download)."""
    root = dataset_root(name, data_path)
    if root is None:
        if name not in BUNDLED_DATASETS:
            return None
        root = bundled_dataset_dir()
    path = root / f"{name}.inter"
    stat = path.stat()
    return _count_ids(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _count_ids(path: Path, mtime_ns: int, size: int) -> tuple[int, int]:
    """Counted once per version of the file (its modification time and size are part of the key)."""
    import pandas as pd

    header = _read_text(path).split("\n", 1)[0].split("\t")
    names = [column.partition(":")[0] for column in header]
    columns = [header[names.index("user_id")], header[names.index("item_id")]]
    ids = pd.read_csv(path, sep="\t", usecols=columns, dtype=str, quoting=3, keep_default_na=False)
    return int(ids[columns[0]].nunique()), int(ids[columns[1]].nunique())


def build_config(
    model: str,
    dataset: str,
    data_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    device: str = "cpu",
    work_dir: str | Path = ".kdbench_cache",
    load_time: bool = False,
):
    """A RecBole Config with the KD protocol; `overrides` sets model sizes and training settings.

    `load_time`: also load the user file's `timestamp` column when it has one (an ordered
    protocol's split follows it)."""
    from recbole.config import Config

    root = dataset_root(dataset, data_path)
    work_dir = Path(work_dir)
    config_dict: dict[str, Any] = {
        **PROTOCOL,
        "use_gpu": device.startswith("cuda"),
        "device": device,
        "state": "ERROR",
        "show_progress": False,
        "reproducibility": True,
        "seed": DEFAULT_SPLIT_SEED,
        "checkpoint_dir": str(work_dir / "recbole_saved"),
        "log_wandb": False,
        "eval_batch_size": EVAL_BATCH_CELLS,
    }
    if root is not None:
        config_dict["data_path"] = str(root.parent)
        # without a dataset YAML RecBole loads only user_id/item_id; keep that explicit
        columns = ["user_id", "item_id"]
        if load_time and TIME_FIELD in atomic_columns(root / f"{dataset}.inter"):
            columns.append(TIME_FIELD)
        config_dict["load_col"] = {"inter": columns}
    config_dict.update(overrides or {})
    with isolated_argv(), kept_anomaly_mode():  # Config imports the model's RecBole module
        config = Config(model=model, dataset=dataset, config_dict=config_dict)
    if root is not None:
        # RecBole reads `data_path/<dataset>/` (and always the bundled copy for 'ml-100k'): point it
        # at the folder that actually holds the files, so the flat DIR/<name>.inter layout works too
        config["data_path"] = str(root)
    config["device"] = torch.device(device)
    logging.getLogger().setLevel(logging.ERROR)
    return config


@dataclass
class PreparedData:
    """One dataset split into RecBole loaders, plus what strategies need to know about it."""

    name: str
    config: Any
    dataset: Any
    train: Any
    valid: Any
    test: Any
    history: sp.csr_matrix  # users x items, training interactions (sequential: queries x input items)
    fingerprint: str  # hash of the training interactions and split: part of cache keys
    queries: Any = None  # sequential family: the training queries' inputs (families.sequential.QueryTable)

    @property
    def n_users(self) -> int:
        return int(self.dataset.user_num)

    @property
    def n_items(self) -> int:
        return int(self.dataset.item_num)

    @property
    def uid_field(self) -> str:
        return self.dataset.uid_field

    @property
    def iid_field(self) -> str:
        return self.dataset.iid_field

    @property
    def neg_iid_field(self) -> str:
        return self.config["NEG_PREFIX"] + self.dataset.iid_field

    def item_popularity(self) -> np.ndarray:
        return np.asarray(self.history.sum(axis=0)).ravel()
