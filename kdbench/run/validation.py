"""Cells refused before anything trains: a bad dataset, pairing, strategy or hyperparameter, or a
size that cannot fit in the device's memory."""

from __future__ import annotations

from typing import Iterable

from kdbench.run.cells import TEACHER, Cell
from kdbench.data.loading import check_dataset, dataset_size
from kdbench.errors import KdbenchError, choices
from kdbench.families import BackboneSpec, check_pairing, get_protocol
from kdbench.run.memory import check_memory
from kdbench.strategies import STRATEGIES
from kdbench.strategies.composite import part_hparams
from kdbench.training.teacher_file import is_file_teacher, read_teacher_file


def validate_cells(cells: Iterable[Cell], device: str = "cpu") -> list[Cell]:
    """The cells, after checking each one; the first problem is one line (KdbenchError)."""
    cells = list(cells)
    checked_datasets, checked_files = set(), set()
    for cell in cells:
        get_protocol(cell.protocol)
        if (cell.dataset, cell.data_path) not in checked_datasets:
            check_dataset(cell.dataset, cell.data_path)
            checked_datasets.add((cell.dataset, cell.data_path))
        family = check_pairing(cell.teacher, cell.student, cell.strategy, cell.protocol, dict(cell.hparams))
        if is_file_teacher(cell.teacher):
            check_file_teacher(cell, read=cell.teacher not in checked_files)
            checked_files.add(cell.teacher)
        if cell.strategy != TEACHER:
            strategy = STRATEGIES.get(cell.strategy)
            hparams = strategy.resolve_hparams(dict(cell.hparams))
            check_against_dataset(strategy, hparams, dataset_size(cell.dataset, cell.data_path))
            for part in getattr(strategy, "parts", None) or (strategy,):
                part.check_models(cell.teacher.model, cell.student.model)
            for spec in (cell.teacher, cell.student) if strategy.needs_representations else ():
                if is_file_teacher(spec):
                    continue  # check_file_teacher refused such strategies
                family.check_representations(spec.model, cell.strategy)
            check_ensemble(cell, strategy.ensemble_teachers(hparams))
    check_memory(cells, lambda cell: dataset_size(cell.dataset, cell.data_path), device)
    return cells


def check_file_teacher(cell: Cell, read: bool = True) -> None:
    """A teacher file teaches strategies that declare `file_teacher` (or need no teacher), reading no
    more of each list than the file's K; it has no teacher row of its own; the file itself is read
    and checked (header, shapes, ids, scores)."""
    if cell.strategy == TEACHER:
        raise KdbenchError(f"teacher {cell.teacher} is a file: it has no teacher row to train or measure")
    strategy = STRATEGIES.get(cell.strategy)
    if not strategy.learns_from_files():
        valid = [name for name in STRATEGIES.names() if STRATEGIES.get(name).learns_from_files()]
        raise KdbenchError(f"strategy '{cell.strategy}' needs the teacher model itself (its scores beyond its "
                           f"top-K, a forward pass or hidden features), not a teacher file: strategies that "
                           f"learn from a teacher file: {choices(valid)}")
    key = strategy.file_teacher
    if key is not None:
        value = strategy.resolve_hparams(dict(cell.hparams))[key]
        if value > cell.teacher.k:
            raise KdbenchError(f"strategy '{cell.strategy}' reads {key}={value} items of each teacher list; "
                               f"the teacher file {cell.teacher.path} holds K={cell.teacher.k}: lower {key} or "
                               f"export the teacher with a larger --k")
    if read:
        read_teacher_file(cell.teacher.path)


def check_ensemble(cell: Cell, specs: tuple[str, ...]) -> None:
    """An ensemble strategy's other teachers (HetComp's `teachers`): well-formed backbones that
    could be the pairing's teacher (same family, the protocol's), each named once (the pairing's own
    teacher may be named: it is the ensemble's first member already)."""
    seen = set()
    for text in specs:
        try:
            spec = BackboneSpec.parse(text)
            check_pairing(spec, cell.student, TEACHER, cell.protocol)
        except KdbenchError as exc:
            raise KdbenchError(f"strategy '{cell.strategy}', teacher '{text}' of its ensemble: {exc}") from None
        if str(spec) in seen:
            raise KdbenchError(f"strategy '{cell.strategy}': teacher {spec} is named twice in its ensemble")
        seen.add(str(spec))


def check_against_dataset(strategy, hparams: dict, size: tuple[int, int] | None) -> None:
    """The strategy's own size rules (`check_hparams`), for a composite each part's on its share of
    the hyperparameters; skipped where the size is unknown before download (RecBole fetches it)."""
    if size is None:
        return
    parts = getattr(strategy, "parts", ())
    given = part_hparams([part.name for part in parts], hparams)
    for part in parts:
        part.check_hparams(part.resolve_hparams(given[part.name]), *size)
    if not parts:
        strategy.check_hparams(hparams, *size)
