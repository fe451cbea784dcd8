"""Memory a cell needs at least, checked before anything trains.

An impossible size (`--student BPR:99999999999`) would otherwise start the suite, fail at
allocation and be recorded as a failed cell. The estimate is a lower bound: the embedding tables
(one row per user and item; NeuMF has two tables: `ModelCard.tables_per_row`) in float32, times the copies training keeps
(weights, gradients, Adam's two moments, the best weights kept for early stopping), plus the
frozen teacher and the knowledge the strategy prepares (`DistillationStrategy.knowledge_bytes`).
A cell is refused only when even this bound exceeds the device's total memory.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

from kdbench.run.cells import Cell
from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec
from kdbench.run.record import resolved_hparams
from kdbench.training.teacher_file import is_file_teacher

FLOAT_BYTES = 4
TRAINING_COPIES = 5  # weights, gradients, Adam's two moments, best weights
# RecBole adds a padding id to users and items; a dataset not here yet counts as this small.
UNKNOWN_SIZE = (1, 1)


def model_bytes(spec: BackboneSpec, n_users: int, n_items: int) -> int:
    """Bytes of a model's embedding tables (RecBole ids include one padding id each); a teacher
    file's: its lists and scores (K per user, 8 + 4 bytes each) and item embeddings."""
    if is_file_teacher(spec):
        return (n_users + 1) * spec.k * 12 + (n_items + 1) * spec.dim * FLOAT_BYTES
    rows = (n_users + 1) + (n_items + 1)
    return rows * spec.dim * spec.card.tables_per_row * FLOAT_BYTES


def cell_bytes(cell: Cell, n_users: int, n_items: int) -> int:
    """At least how many bytes the cell needs: its teacher's training, or the student's with the
    frozen teacher and the strategy's prepared knowledge, whichever is larger."""
    teacher = model_bytes(cell.teacher, n_users, n_items)
    need = TRAINING_COPIES * teacher
    if not cell.is_teacher:
        from kdbench.strategies import STRATEGIES

        strategy = STRATEGIES.get(cell.strategy)
        knowledge = strategy.knowledge_bytes(resolved_hparams(cell), n_users + 1, n_items + 1, cell.teacher.dim)
        need = max(need, teacher + TRAINING_COPIES * model_bytes(cell.student, n_users, n_items) + knowledge)
    return need


def total_memory(device: str) -> int:
    """The device's total memory in bytes: GPU memory for cuda, physical RAM otherwise."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def human(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} PiB"


def check_memory(cells: Iterable[Cell], sizes: Callable[[Cell], tuple[int, int] | None], device: str,
                 available: int | None = None) -> None:
    """Refuse, with the estimate, the first cell whose lower-bound memory exceeds the device's."""
    available = total_memory(device) if available is None else available
    for cell in cells:
        n_users, n_items = sizes(cell) or UNKNOWN_SIZE
        need = cell_bytes(cell, n_users, n_items)
        if need > available:
            model = cell.teacher if cell.is_teacher or cell.teacher.dim >= cell.student.dim else cell.student
            raise KdbenchError(
                f"{cell.dataset} {cell.pairing} {cell.label} needs at least {human(need)} of memory "
                f"({model} embeds {n_users:,} users and {n_items:,} items; with gradients, Adam's state "
                f"and the teacher), more than the {human(available)} of {device} memory here: "
                f"choose a smaller MODEL:DIM"
            )
