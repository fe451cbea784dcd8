"""`python -m kdbench data import`: a dataset in another format -> RecBole atomic files.

The interaction file keeps the source's order: rows are written in file order, and a `timestamp`
column holds each pair's 0-based position in the source, so the `ordered` protocols (and RecBole's
own time ordering, `order: TO`) split each user's interactions in the order of the file.

Formats:
- `users-dat` (CiteULike's `users.dat`, as in changun/CollMetric `citeulike-t/`): one line per user,
  the user id is the line number from 0; each line is the number of items, then the item ids,
  separated by spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kdbench import atomic
from kdbench.errors import KdbenchError, choices
from kdbench.paths import check_file

USERS_DAT = "users-dat"
FORMATS = (USERS_DAT,)
HEADER = "user_id:token\titem_id:token\ttimestamp:float"


@dataclass(frozen=True)
class ImportSummary:
    path: Path
    users: int
    items: int
    interactions: int
    dropped_users: int


def read_users_dat(path: str | Path) -> pd.DataFrame:
    """(user, item) pairs of a users.dat file in file order; one error naming the first bad line."""
    path = check_file(path, "users.dat file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KdbenchError(f"malformed users.dat {path}: byte {exc.start} is not UTF-8 text") from None
    users: list[int] = []
    items: list[str] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if not lines:
        raise KdbenchError(f"malformed users.dat {path}: the file is empty")
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        where = f"malformed users.dat {path}: line {number}"
        if not fields:
            raise KdbenchError(f"{where} is empty; every line must be '<count> <item> ...' (count may be 0)")
        if not all(field.isdigit() for field in fields):
            bad = next(field for field in fields if not field.isdigit())
            raise KdbenchError(f"{where}: '{bad}' is not a non-negative integer")
        if int(fields[0]) != len(fields) - 1:
            raise KdbenchError(f"{where} says {int(fields[0])} items but lists {len(fields) - 1}")
        users.extend([number - 1] * (len(fields) - 1))
        items.extend(str(int(field)) for field in fields[1:])
    return pd.DataFrame({"user_id": users, "item_id": items})


def import_users_dat(source: str | Path, name: str, out: str | Path = "data",
                     min_user_interactions: int = 0) -> ImportSummary:
    """Write `out/<name>/<name>.inter` from a users.dat file, keeping users with at least
    `min_user_interactions` items (one pass, users only: items are not filtered, as in
    woriazzc/KDs' CiteULike preprocessing). Ids stay the file's (user = line number)."""
    if not name or "/" in name or name in (".", ".."):
        raise KdbenchError(f"dataset name '{name}' must be a plain name (it names the folder and the file)")
    if min_user_interactions < 0:
        raise KdbenchError(f"--min-user-interactions must be >= 0, got {min_user_interactions}")
    pairs = read_users_dat(source)
    pairs["timestamp"] = range(len(pairs))  # the pair's position in the source file
    counts = pairs.groupby("user_id")["item_id"].transform("size")
    kept = pairs[counts >= min_user_interactions]
    if kept.empty:
        raise KdbenchError(f"no user of {source} has {min_user_interactions} or more items")
    target = Path(out) / name / f"{name}.inter"
    if target.parent.exists() and not target.parent.is_dir():
        raise KdbenchError(f"--out: '{target.parent}' exists and is not a folder")
    body = kept.to_csv(sep="\t", header=False, index=False, lineterminator="\n")
    atomic.write_text(target, HEADER + "\n" + body)
    return ImportSummary(target, int(kept["user_id"].nunique()), int(kept["item_id"].nunique()), len(kept),
                         int(pairs["user_id"].nunique() - kept["user_id"].nunique()))


def import_dataset(fmt: str, source: str | Path, name: str, out: str | Path = "data",
                   min_user_interactions: int = 0) -> ImportSummary:
    if fmt != USERS_DAT:
        raise KdbenchError(f"unknown format '{fmt}': valid: {choices(FORMATS)}")
    return import_users_dat(source, name, out, min_user_interactions)
