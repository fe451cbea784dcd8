"""Teachers from files: a teacher kdbench cannot train (an LLM recommender, a model trained elsewhere)
as its per-row top-K lists, their scores and, optionally, its item embeddings.

Format `kdbench-teacher`, version 1: a directory holding

    teacher.json          {"format": "kdbench-teacher", "version": 1, "dataset": "ml-100k",
                           "family": "general" | "sequential", "protocol": "random", "split_seed": 2020,
                           "fingerprint": "<split fingerprint>" | null, "rows": R, "n_items": N,
                           "K": K, "embeddings": true | false, "source": "<free text>"}
    items.npy             int64 (R, K): row r's top-K item ids, best first
    scores.npy            float32 (R, K): their scores, higher = better, non-increasing along a row
                          (up to float rounding: ORDER_SLACK)
    item_embeddings.npy   float32 (N, d): the teacher's item embeddings (when "embeddings" is true)

A row is a user of the general family (R = RecBole's user count, padding user 0 included) or a
query of the sequential family (R = Q + 1: the training prediction points `query_id` 1..Q that
`kdbench.families.sequential` numbers, padding query 0 included). Ids are kdbench's (RecBole's
remapped) ids; N counts the padding item 0. Row 0 is never used but must hold ids in [0, N). A row's
list must leave out the row's training items (a query's input items) and the padding item, as a
trained teacher's top-K does (`strategies.knowledge.teacher_top_n`). `fingerprint`, when given, must
be the split's (`PreparedData.fingerprint`); R and N must match the dataset's in any case.

The arrays are read with `numpy.load(allow_pickle=False)`: a file can never run code. Loading checks
the header, the shapes, the ids and the scores (`read_teacher_file`), then the file against the split
(`check_against_split`); each problem is one KdbenchError line. A cell's identity holds the content
hash (`content_hash`), so a changed file makes its runs stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from kdbench.store import atomic
from kdbench.backbones import BackboneAdapter
from kdbench.errors import KdbenchError

FORMAT, VERSION = "kdbench-teacher", 1
PREFIX = "file:"  # `--teacher file:PATH`
HEADER, ITEMS, SCORES, EMBEDDINGS = "teacher.json", "items.npy", "scores.npy", "item_embeddings.npy"
HEADER_FIELDS = {"format": str, "version": int, "dataset": str, "family": str, "protocol": str, "split_seed": int,
                 "rows": int, "n_items": int, "K": int, "embeddings": bool}
FILE_MODEL = "file"
# Scores must be non-increasing along a row up to float rounding (relative to the row's largest
# magnitude, at least 1): a list ranked by one product and scored by another (a sparse product, a
# batched forward) may differ in the last bits.
ORDER_SLACK = 1e-6  # the adapter's `name`: never a dot-product backbone, scored through `score`


@dataclass(frozen=True)
class TeacherFile:
    """A validated teacher file: its header, lists (R, K), scores (R, K), embeddings (N, d) or None."""

    path: Path
    header: dict[str, Any]
    items: torch.Tensor
    scores: torch.Tensor
    item_embeddings: torch.Tensor | None

    @property
    def k(self) -> int:
        return int(self.header["K"])


def _fail(path: Path | str, problem: str) -> KdbenchError:
    return KdbenchError(f"teacher file {path}: {problem}")


def read_header(path: str | Path) -> dict[str, Any]:
    """The checked header of the teacher file at `path` (a directory)."""
    folder = Path(path)
    if not (folder / HEADER).is_file():
        raise _fail(path, f"no {HEADER} (a teacher file is a directory written by `kdbench export-teacher`)")
    try:
        header = json.loads((folder / HEADER).read_text())
    except (OSError, ValueError) as exc:
        raise _fail(path, f"{HEADER} is not readable JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _fail(path, f"{HEADER} does not declare \"format\": \"{FORMAT}\"")
    for key, kind in HEADER_FIELDS.items():
        value = header.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _fail(path, f"header field '{key}' is missing or not {kind.__name__}")
    if header["version"] != VERSION:
        raise _fail(path, f"format version {header['version']} is not supported (this kdbench reads {VERSION})")
    if header.get("fingerprint") is not None and not isinstance(header["fingerprint"], str):
        raise _fail(path, "header field 'fingerprint' must be a string or null")
    if header["K"] < 1 or header["rows"] < 2 or header["n_items"] < 2:
        raise _fail(path, "K must be >= 1 and rows, n_items >= 2")
    if header["K"] > header["n_items"] - 1:
        raise _fail(path, f"K ({header['K']}) exceeds the {header['n_items'] - 1} real items")
    return header


def _array(folder: Path, name: str, kinds: str) -> np.ndarray:
    try:
        array = np.load(folder / name, allow_pickle=False)
    except FileNotFoundError:
        raise _fail(folder, f"{name} is missing") from None
    except (OSError, ValueError) as exc:
        raise _fail(folder, f"{name} is not a plain .npy array ({exc})") from None
    if array.dtype.kind not in kinds:
        raise _fail(folder, f"{name} has dtype {array.dtype}, expected {'integers' if kinds == 'iu' else 'floats'}")
    return array


def read_teacher_file(path: str | Path) -> TeacherFile:
    """The teacher file at `path`, checked on its own: shapes, K, ids in range, distinct ids per row,
    finite non-increasing scores, embeddings' rows. One KdbenchError line per problem."""
    folder = Path(path)
    header = read_header(folder)
    rows, n_items, k = header["rows"], header["n_items"], header["K"]
    items, scores = _array(folder, ITEMS, "iu"), _array(folder, SCORES, "f")
    for name, array in ((ITEMS, items), (SCORES, scores)):
        if array.shape != (rows, k):
            raise _fail(path, f"{name} has shape {array.shape}, expected (rows, K) = ({rows}, {k}) from the header")
    if items.min() < 0 or items.max() >= n_items:
        raise _fail(path, f"{ITEMS} holds ids outside [0, {n_items}) (n_items from the header)")
    if (items[1:] == 0).any():
        raise _fail(path, f"{ITEMS} lists the padding item 0 in a row other than row 0")
    ordered = np.sort(items[1:], axis=1)
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise _fail(path, f"{ITEMS} repeats an item within a row")
    if not np.isfinite(scores[1:]).all():
        raise _fail(path, f"{SCORES} holds a non-finite score")
    slack = ORDER_SLACK * np.maximum(1.0, np.abs(scores[1:]).max(axis=1, keepdims=True))
    if (np.diff(scores[1:], axis=1) > slack).any():
        raise _fail(path, f"{SCORES} is not sorted best first (non-increasing along each row)")
    embeddings = None
    if header["embeddings"]:
        embeddings = _array(folder, EMBEDDINGS, "f")
        if embeddings.ndim != 2 or embeddings.shape[0] != n_items or embeddings.shape[1] < 1:
            raise _fail(path, f"{EMBEDDINGS} has shape {embeddings.shape}, expected (n_items, d) with n_items {n_items}")
        if not np.isfinite(embeddings).all():
            raise _fail(path, f"{EMBEDDINGS} holds a non-finite value")
        embeddings = torch.from_numpy(embeddings.astype(np.float32))
    return TeacherFile(folder, header, torch.from_numpy(items.astype(np.int64)),
                       torch.from_numpy(scores.astype(np.float32)), embeddings)


def check_against_split(teacher: TeacherFile, dataset: str, family: str, rows: int, n_items: int,
                        fingerprint: str, history: sp.csr_matrix | None = None,
                        protocol: str | None = None, split_seed: int | None = None) -> None:
    """Refuse a file made for another dataset, family, protocol, split or size, or whose lists hold
    a row's training items (`history`, rows x items)."""
    header, path = teacher.header, teacher.path
    if header["dataset"] != dataset:
        raise _fail(path, f"made for dataset '{header['dataset']}', not '{dataset}'")
    for key, value in (("protocol", protocol), ("split_seed", split_seed)):
        if value is not None and header[key] != value:
            raise _fail(path, f"made with {key} {header[key]}, this run's is {value}")
    if header["family"] != family:
        raise _fail(path, f"made for {header['family']} backbones, the student is a {family} one")
    if header.get("fingerprint") is not None and header["fingerprint"] != fingerprint:
        raise _fail(path, f"made for another split (fingerprint {header['fingerprint']}, this split's is "
                          f"{fingerprint}): export it again")
    if (header["rows"], header["n_items"]) != (rows, n_items):
        what = "users" if family == "general" else "queries"
        raise _fail(path, f"has {header['rows']} rows and {header['n_items']} items; this split has {rows} "
                          f"{what} (padding row included) and {n_items} items")
    if history is not None and history.nnz:
        coo = history.tocoo()
        seen = np.unique(coo.row.astype(np.int64) * n_items + coo.col.astype(np.int64))
        listed = (np.arange(rows, dtype=np.int64)[:, None] * n_items + teacher.items.numpy())[1:]
        position = np.searchsorted(seen, listed).clip(max=len(seen) - 1)
        hits = seen[position] == listed
        if hits.any():
            row = int(np.nonzero(hits.any(axis=1))[0][0]) + 1
            raise _fail(path, f"row {row} lists one of its own training items: lists must leave them out")


def content_hash(path: str | Path) -> str:
    """sha256 (16 hex digits) of the header and the arrays, in a fixed order: a run's identity."""
    folder = Path(path)
    digest = hashlib.sha256()
    for name in (HEADER, ITEMS, SCORES, EMBEDDINGS):
        file = folder / name
        if file.is_file():
            digest.update(name.encode() + b"\0")
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def write_teacher_file(path: str | Path, header: dict[str, Any], items: torch.Tensor, scores: torch.Tensor,
                       item_embeddings: torch.Tensor | None = None) -> Path:
    """Write a teacher file, every part or none (`atomic.atomic_paths`); `header` gives the fields
    besides format, version, rows, K and embeddings, which are taken from the arrays."""
    folder = Path(path)
    full = {"format": FORMAT, "version": VERSION, **header, "rows": int(items.shape[0]),
            "n_items": int(header["n_items"]), "K": int(items.shape[1]), "embeddings": item_embeddings is not None}
    arrays = {ITEMS: items.cpu().numpy().astype(np.int64), SCORES: scores.cpu().numpy().astype(np.float32)}
    if item_embeddings is not None:
        arrays[EMBEDDINGS] = item_embeddings.detach().cpu().numpy().astype(np.float32)
    names = [*arrays, HEADER]
    with atomic.atomic_paths([folder / name for name in names]) as temps:
        for name, temp in zip(names, temps):
            if name == HEADER:
                temp.write_text(json.dumps(full, indent=1, sort_keys=True) + "\n")
            else:
                with open(temp, "wb") as handle:
                    np.save(handle, arrays[name], allow_pickle=False)
    if item_embeddings is None:
        (folder / EMBEDDINGS).unlink(missing_ok=True)
    return folder


class FileTeacherAdapter(BackboneAdapter):
    """A teacher file seen through the BackboneAdapter interface, so the teacher knowledge of
    `strategies.knowledge` reads it as it reads a model: `full_scores` gives the listed scores and
    -inf elsewhere (so a top-n with n <= K is the file's list), `score` the listed scores of listed
    items (an unlisted item is an error), `representation_tables` the item embeddings only."""

    def __init__(self, teacher: TeacherFile, uid_field: str, iid_field: str, device: torch.device | str = "cpu"):
        self.model = nn.Module()
        self.model.register_parameter("anchor", nn.Parameter(torch.zeros(1, device=device), requires_grad=False))
        self.name, self.card = FILE_MODEL, None
        self.uid_field, self.iid_field = uid_field, iid_field
        self.file = teacher
        self.items, self.scores = teacher.items.to(device), teacher.scores.to(device)
        self.n_items = int(teacher.header["n_items"])

    @property
    def has_representations(self) -> bool:
        return False

    def require_representations(self, strategy: str) -> None:
        raise KdbenchError(f"strategy '{strategy}' needs the teacher's user/item representations, which a "
                           "teacher file does not hold")

    def item_embeddings(self) -> torch.Tensor | None:
        return self.file.item_embeddings

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        out = torch.full((len(users), self.n_items), -torch.inf, device=self.items.device)
        users = users.to(self.items.device)
        return out.scatter_(1, self.items[users], self.scores[users])

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        users = users.to(self.items.device)
        match = self.items[users].unsqueeze(1) == items.to(self.items.device).unsqueeze(2)  # (B, M, K)
        if not match.any(dim=2)[users > 0].all():
            raise KdbenchError(f"teacher file {self.file.path}: a strategy asked for the score of an item outside "
                               f"a row's top-{self.file.k} list")
        return (match * self.scores[users].unsqueeze(1)).sum(dim=2)

    def one_forward_per_step(self):
        from contextlib import nullcontext

        return nullcontext()


@dataclass(frozen=True)
class FileTeacherSpec:
    """A cell's teacher read from a file (`--teacher file:PATH`), where a trained teacher has a
    BackboneSpec: written `file:PATH`, its family from the header, and its content hash, which the
    cell's identity and its teacher key hold (a changed file makes its runs stale)."""

    path: str
    sha256: str
    family_name: str
    k: int
    dim: int = 0  # the item embeddings' dimension (0: none)
    model = FILE_MODEL

    @classmethod
    def parse(cls, text: str) -> "FileTeacherSpec":
        path = text.strip()[len(PREFIX):]
        if not path:
            raise KdbenchError("--teacher file:PATH needs a path to a teacher file (a directory)")
        header = read_header(path)
        dim = 0
        if header["embeddings"] and Path(path, EMBEDDINGS).is_file():
            try:
                dim = int(np.load(Path(path, EMBEDDINGS), mmap_mode="r", allow_pickle=False).shape[-1])
            except (OSError, ValueError, IndexError):
                dim = 0  # read_teacher_file names the problem
        return cls(path, content_hash(path), header["family"], header["K"], dim)

    def __str__(self) -> str:
        return PREFIX + self.path

    def size_overrides(self) -> dict[str, Any]:
        """What the teacher key hashes besides the model's name: the file's content."""
        return {"teacher_file": self.sha256}

    def identity(self) -> dict[str, Any]:
        """The `teacher_file` entry of a student cell's identity."""
        return {"sha256": self.sha256, "K": self.k}


def is_file_teacher(spec: Any) -> bool:
    return isinstance(spec, FileTeacherSpec)


def parse_teacher(text: str):
    """A teacher as written on the command line or in a record: `file:PATH` or `MODEL:DIM[:OPTIONS]`."""
    if text.strip().startswith(PREFIX):
        return FileTeacherSpec.parse(text)
    from kdbench.families import BackboneSpec

    return BackboneSpec.parse(text)
