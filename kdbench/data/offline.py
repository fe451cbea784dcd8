"""A suite on a machine that lacks some of its datasets (a fresh checkout, no network).

`run --all` runs the cells whose data is here and sets aside those of each catalogue dataset that is
not, naming each such dataset in one line with the command that fetches it; their stored runs are
not touched, so the leaderboard (built from every stored run) keeps them. With `strict`, a missing
dataset is an error instead, before anything trains. A dataset outside the catalogue is never set
aside: a wrong name or folder stays the error it is.
"""

from __future__ import annotations

from typing import Callable, Iterable, Protocol, TypeVar

from kdbench.data.catalogue import CATALOGUE
from kdbench.data.location import is_present, not_present
from kdbench.errors import KdbenchError


class _HasData(Protocol):
    dataset: str
    data_path: str | None


C = TypeVar("C", bound=_HasData)


def missing_datasets(cells: Iterable[_HasData]) -> dict[tuple[str, str | None], int]:
    """(catalogue dataset, data path) -> number of cells, for each dataset not present where it is read."""
    missing: dict[tuple[str, str | None], int] = {}
    for cell in cells:
        key = (cell.dataset, cell.data_path)
        if cell.dataset in CATALOGUE and (key in missing or not is_present(*key)):
            missing[key] = missing.get(key, 0) + 1
    return missing


def set_aside_missing(cells: list[C], strict: bool = False,
                      note: Callable[[str], None] = print) -> list[C]:
    """`cells` without those whose catalogue dataset is not present; one note per such dataset
    (with `strict`: one error naming them all)."""
    missing = missing_datasets(cells)
    if not missing:
        return cells
    if strict:
        raise KdbenchError("; ".join(not_present(name, path) for name, path in missing) + " (--strict: nothing ran)")
    for (name, path), count in missing.items():
        note(f"kdbench: {not_present(name, path)} ({count} cell(s) set aside; their stored runs stay in "
             f"the leaderboard)")
    return [cell for cell in cells if (cell.dataset, cell.data_path) not in missing]
