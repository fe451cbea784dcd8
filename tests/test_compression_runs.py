"""Compression baselines through the runner: a record per cell with 0 epochs where nothing trains,
the deployed format's bytes as `cost.size_bytes`, and the refusal of an inexact SVD pairing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec
from kdbench.run.runner import Cell, Runner, validate_cells
from kdbench.training.loop import TrainSettings

SMALL = TrainSettings(max_epochs=2, batch_size=4096)


def _cell(toy_dir, strategy: str, **change) -> Cell:
    cell = Cell("toy", BackboneSpec("BPR", 16), BackboneSpec("BPR", 4), strategy, seed=0, train=SMALL,
                data_path=str(toy_dir))
    return replace(cell, **change)


@pytest.fixture(scope="module")
def records(toy_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("compression")
    runner = Runner(root / "results", root / "cache")
    cells = [_cell(toy_dir, name) for name in ("scratch", "svd", "svd-ft", "prune", "prune-ft", "quant", "kd+ptq")]
    cells.append(_cell(toy_dir, "quant", hparams=(("bits", 4),)))
    found = {cell.label: record for cell, record in zip(cells, runner.run_all(validate_cells(cells)))}
    return found | {"_root": root}


def test_compression_cells_finish_with_their_deployed_bytes(records):
    runs = {label: record for label, record in records.items() if label != "_root"}
    assert all(record["status"] == "ok" for record in runs.values()), runs
    n_rows = records["scratch"]["cost"]["params"] // 4  # users + items (padding rows included)
    assert records["scratch"]["cost"]["size_bytes"] == 4 * 4 * n_rows
    assert "compression" not in records["scratch"]
    assert records["quant"]["cost"]["size_bytes"] == n_rows * (16 + 4)
    assert records["quant@bits=4"]["cost"]["size_bytes"] == n_rows * (8 + 4)
    assert records["kd+ptq"]["cost"]["size_bytes"] == n_rows * (4 + 4)
    budget = records["scratch"]["cost"]["size_bytes"]
    assert budget - 8 < records["prune"]["cost"]["size_bytes"] <= budget
    assert records["prune"]["compression"]["format"].startswith("CSR")


def test_strategies_that_do_not_train_run_zero_epochs(records):
    for label in ("svd", "prune", "quant"):
        assert records[label]["training"]["epochs_run"] == 0
    for label in ("svd-ft", "prune-ft", "kd+ptq"):
        assert records[label]["training"]["epochs_run"] >= 1
    assert records["prune-ft"]["cost"]["size_bytes"] == records["prune"]["cost"]["size_bytes"]
    assert records["prune"]["model"] == "BPR:16 CSR@BPR:4" and records["kd+ptq"]["model"] == "BPR:4 int8"
    assert records["svd"]["model"] == "BPR:4"


def test_the_report_of_real_records_has_the_frontier(records, tmp_path):
    from kdbench.report import write_reports

    write_reports(records["_root"] / "results", tmp_path)
    text = (tmp_path / "leaderboard.md").read_text()
    assert "## Compression frontier" in text
    assert "| BPR:4    | 1,472   |" in text  # the scratch student's budget: 4 bytes x 4 dims x 92 rows
    assert (tmp_path / "frontier.png").is_file()
    csv = (tmp_path / "leaderboard.csv").read_text()
    assert ",compression," in csv and ",response+compression," in csv


def test_an_inexact_svd_pairing_is_refused_before_training(toy_dir):
    cell = _cell(toy_dir, "svd", student=BackboneSpec("LightGCN", 4))
    with pytest.raises(KdbenchError, match="svd"):
        validate_cells([cell])
