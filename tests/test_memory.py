"""The memory estimate: a lower bound on what a cell needs, refused before anything trains."""

from __future__ import annotations

import pytest

from kdbench.run.cells import Cell
from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec
from kdbench.run.memory import TRAINING_COPIES, cell_bytes, check_memory, model_bytes

USERS, ITEMS = 943, 1682  # ml-100k
GIB = 1024**3


def _cell(strategy: str = "scratch", teacher: str = "BPR:64", student: str = "BPR:5", **hparams) -> Cell:
    return Cell("ml-100k", BackboneSpec.parse(teacher), BackboneSpec.parse(student), strategy, seed=0,
                hparams=tuple(sorted(hparams.items())))


def test_a_model_needs_a_float_per_dimension_for_every_user_and_item_including_padding():
    assert model_bytes(BackboneSpec("BPR", 64), USERS, ITEMS) == (USERS + 1 + ITEMS + 1) * 64 * 4
    assert model_bytes(BackboneSpec("NeuMF", 64), USERS, ITEMS) == 2 * model_bytes(BackboneSpec("BPR", 64), USERS, ITEMS)


def test_a_student_cell_counts_its_training_state_and_the_frozen_teacher():
    cell = _cell(teacher="BPR:8", student="BPR:200")
    expected = model_bytes(cell.teacher, USERS, ITEMS) + TRAINING_COPIES * model_bytes(cell.student, USERS, ITEMS)
    assert cell_bytes(cell, USERS, ITEMS) == expected


def test_the_teacher_row_counts_the_teachers_training():
    cell = _cell("teacher", teacher="BPR:200")
    assert cell_bytes(cell, USERS, ITEMS) == TRAINING_COPIES * model_bytes(cell.teacher, USERS, ITEMS)


def test_a_strategy_that_prepares_per_user_lists_needs_them_too():
    small, large = _cell("rrd", top_n=100, teacher="BPR:4", student="BPR:64"), _cell("rrd", top_n=1000, teacher="BPR:4", student="BPR:64")
    # 900 more (id, score) entries per user, for each user row including padding
    assert cell_bytes(large, USERS, ITEMS) - cell_bytes(small, USERS, ITEMS) == (USERS + 1) * 900 * 12


def test_a_feature_strategy_keeps_a_copy_of_the_teachers_representations():
    assert cell_bytes(_cell("fitnet", teacher="BPR:4", student="BPR:64"), USERS, ITEMS) - cell_bytes(
        _cell("scratch", teacher="BPR:4", student="BPR:64"), USERS, ITEMS) == (USERS + 1 + ITEMS + 1) * 4 * 4


def test_a_cell_that_fits_passes_and_one_that_cannot_is_refused_with_its_estimate():
    sizes = lambda cell: (USERS, ITEMS)  # noqa: E731
    check_memory([_cell()], sizes, "cpu", available=GIB)
    with pytest.raises(KdbenchError, match=r"BPR:64->BPR:3000000 scratch needs at least 146\.8 GiB of memory .* "
                                           r"more than the 1\.0 GiB of cpu memory here"):
        check_memory([_cell(student="BPR:3000000")], sizes, "cpu", available=GIB)


def test_a_dataset_not_downloaded_yet_is_estimated_as_tiny_so_only_absurd_sizes_are_refused():
    check_memory([_cell(student="BPR:1000")], lambda cell: None, "cpu", available=GIB)
    with pytest.raises(KdbenchError, match="needs at least"):
        check_memory([_cell(student="BPR:99999999999")], lambda cell: None, "cpu", available=GIB)
