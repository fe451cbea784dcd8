"""`sweep`: a backbone trained from scratch at several sizes (the largest is the reference), written
as results/size_sweep_DATASET_MODEL.md/.csv (`kdbench.run.sweep`)."""

from __future__ import annotations

from pathlib import Path

from kdbench.families import BackboneSpec
from kdbench.commands.execution import Execution, execute_cells
from kdbench.data.loading import check_dataset
from kdbench.store.paths import check_folder
from kdbench.run.sweep import SWEEP_FOLDER, sweep_cells, write_sweep
from kdbench.training.loop import TrainSettings


def run_sweep(results_dir: str | Path, execution: Execution, dataset: str, model: str, dims: list[int],
              seeds: list[int], train: TrainSettings, data_path: str | None = None) -> Path:
    """Every size in `dims` at every seed, each run reused unless `execution.force`: the sweep's table."""
    BackboneSpec.parse(model)
    check_dataset(dataset, data_path)
    check_folder(results_dir, "--results-dir")
    check_folder(execution.cache_dir, "--cache-dir")
    cells = sweep_cells(dataset, model, dims, seeds, train, data_path)
    # the cells' reference is the largest size: its nominal teacher (that model, once more) is not trained
    _, records = execute_cells(cells, Path(results_dir) / SWEEP_FOLDER, execution, check_stored=False,
                               nominal_teachers=False)
    return write_sweep(records, dataset, model, dims, seeds, train, results_dir)
