"""`python -m kdbench data import`: a dataset in another format -> RecBole atomic files.

Each format is a reader registered in `FORMATS` (name -> `Format`): it turns the source file into
(user, item) pairs in the order of the file. The interaction file keeps that order: rows are written
in file order, and a `timestamp` column holds each pair's 0-based position in the source, so the
`ordered` protocols (and RecBole's own time ordering, `order: TO`, which the sequential family's
leave-one-out follows) split each user's interactions in the order of the file. Where the file lists
a user's items in time order (`user-sequences`), this position is a synthetic timestamp that
increases along each user's sequence: the same order as the real times, which the files do not hold.

Formats:
- `users-dat` (CiteULike's `users.dat`, as in changun/CollMetric `citeulike-t/`): one line per user,
  the user id is the line number from 0; each line is the number of items, then the item ids,
  separated by spaces.
- `user-sequences` (`Beauty.txt`, `Yelp.txt` of salesforce/ICLRec, the S3-Rec preprocessing): one
  line per user, the user id, then the user's item ids in time order (oldest first), separated by
  spaces; an item may repeat within a line (a second review of the same business).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from kdbench.store import atomic
from kdbench.errors import KdbenchError
from kdbench.store.paths import check_file
from kdbench.registry import Registry

USERS_DAT = "users-dat"
USER_SEQUENCES = "user-sequences"
HEADER = "user_id:token\titem_id:token\ttimestamp:float"


@dataclass(frozen=True)
class Format:
    """A source format: `read(path)` gives the (user_id, item_id) pairs in file order."""

    name: str
    summary: str
    read: Callable[[Path], pd.DataFrame]


FORMATS: Registry[Format] = Registry("format")


@dataclass(frozen=True)
class ImportSummary:
    path: Path
    users: int
    items: int
    interactions: int
    dropped_users: int


@dataclass(frozen=True)
class Converted:
    """The atomic file's text of an import, and its counts (before it is written anywhere)."""

    text: str
    users: int
    items: int
    interactions: int
    dropped_users: int

    def summary(self, path: Path) -> ImportSummary:
        return ImportSummary(path, self.users, self.items, self.interactions, self.dropped_users)


def _lines(path: str | Path, what: str) -> tuple[Path, list[str]]:
    """The file's lines (UTF-8; the newline ending the last line dropped), or one line saying why not."""
    path = check_file(path, f"{what} file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KdbenchError(f"malformed {what} {path}: byte {exc.start} is not UTF-8 text") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if not lines:
        raise KdbenchError(f"malformed {what} {path}: the file is empty")
    return path, lines


def _integers(fields: list[str], where: str) -> None:
    joined = "".join(fields)
    if not (joined.isascii() and joined.isdigit()):  # one check per line; the loop only names the culprit
        bad = next(field for field in fields if not (field.isascii() and field.isdigit()))
        raise KdbenchError(f"{where}: '{bad}' is not a non-negative integer")


def _pairs(users: list[int], items: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": np.asarray(users, dtype=np.int64), "item_id": np.asarray(items, dtype=np.int64)})


def read_users_dat(path: str | Path) -> pd.DataFrame:
    """(user, item) pairs of a users.dat file in file order; one error naming the first bad line."""
    path, lines = _lines(path, "users.dat")
    users: list[int] = []
    items: list[str] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        where = f"malformed users.dat {path}: line {number}"
        if not fields:
            raise KdbenchError(f"{where} is empty; every line must be '<count> <item> ...' (count may be 0)")
        _integers(fields, where)
        if int(fields[0]) != len(fields) - 1:
            raise KdbenchError(f"{where} says {int(fields[0])} items but lists {len(fields) - 1}")
        users.extend([number - 1] * (len(fields) - 1))
        items.extend(fields[1:])
    return _pairs(users, items)


def read_user_sequences(path: str | Path) -> pd.DataFrame:
    """(user, item) pairs of a one-line-per-user sequence file, each user's items in the line's
    (time) order; one error naming the first bad line or a user listed twice."""
    path, lines = _lines(path, "sequence file")
    users: list[int] = []
    items: list[str] = []
    seen: dict[int, int] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        where = f"malformed sequence file {path}: line {number}"
        if not fields:
            raise KdbenchError(f"{where} is empty; every line must be '<user> <item> <item> ...'")
        _integers(fields, where)
        user = int(fields[0])
        if user in seen:
            raise KdbenchError(f"{where} repeats user {user} of line {seen[user]}; the format has one line per user")
        seen[user] = number
        users.extend([user] * (len(fields) - 1))
        items.extend(fields[1:])
    return _pairs(users, items)


FORMATS.register(USERS_DAT)(Format(
    USERS_DAT, "one line per user (id = line number from 0): the number of items, then the item ids "
               "(CiteULike's users.dat)", read_users_dat))
FORMATS.register(USER_SEQUENCES)(Format(
    USER_SEQUENCES, "one line per user: the user id, then the item ids in time order (Beauty.txt, Yelp.txt "
                    "of the S3-Rec / ICLRec preprocessing)", read_user_sequences))


def convert(fmt: str, source: str | Path, min_user_interactions: int = 0) -> Converted:
    """The atomic file of `source` read as `fmt`, keeping users with at least `min_user_interactions`
    items (one pass, users only: items are not filtered, as in woriazzc/KDs' CiteULike preprocessing).
    Ids stay the file's; `timestamp` is each pair's position in the source."""
    reader = FORMATS.get(fmt)
    if min_user_interactions < 0:
        raise KdbenchError(f"--min-user-interactions must be >= 0, got {min_user_interactions}")
    pairs = reader.read(Path(source))
    pairs["timestamp"] = range(len(pairs))  # the pair's position in the source file
    counts = pairs.groupby("user_id")["item_id"].transform("size")
    kept = pairs[counts >= min_user_interactions]
    if kept.empty:
        raise KdbenchError(f"no user of {source} has {max(min_user_interactions, 1)} or more items")
    rows = zip(kept["user_id"].tolist(), kept["item_id"].tolist(), kept["timestamp"].tolist())
    body = "".join(f"{user}\t{item}\t{position}\n" for user, item, position in rows)
    return Converted(HEADER + "\n" + body, int(kept["user_id"].nunique()), int(kept["item_id"].nunique()),
                     len(kept), int(pairs["user_id"].nunique() - kept["user_id"].nunique()))


def atomic_file(name: str, out: str | Path) -> Path:
    """`out/<name>/<name>.inter`, after checking that the name can name a folder and a file."""
    if not name or "/" in name or name in (".", ".."):
        raise KdbenchError(f"dataset name '{name}' must be a plain name (it names the folder and the file)")
    target = Path(out) / name / f"{name}.inter"
    if target.parent.exists() and not target.parent.is_dir():
        raise KdbenchError(f"--out: '{target.parent}' exists and is not a folder")
    return target


def import_dataset(fmt: str, source: str | Path, name: str, out: str | Path = "data",
                   min_user_interactions: int = 0) -> ImportSummary:
    """Write `out/<name>/<name>.inter` from `source` in format `fmt` (atomically: all or nothing)."""
    FORMATS.get(fmt)
    target = atomic_file(name, out)
    converted = convert(fmt, source, min_user_interactions)
    atomic.write_text(target, converted.text)
    return converted.summary(target)


def import_users_dat(source: str | Path, name: str, out: str | Path = "data",
                     min_user_interactions: int = 0) -> ImportSummary:
    """`import_dataset` for a users.dat file."""
    return import_dataset(USERS_DAT, source, name, out, min_user_interactions)
