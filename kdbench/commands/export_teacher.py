"""`export-teacher`: write a kdbench teacher (trained now, or from the cache) as a teacher file
(`kdbench.training.teacher_file`), so that distilling from the file and from the model can be compared and
a file teacher can stand in for any model a student learns from."""

from __future__ import annotations

from pathlib import Path

import torch

from kdbench.run.cells import TEACHER, Cell
from kdbench.commands.execution import Execution, progress_note
from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec, default_protocol, family_of
from kdbench.store.paths import check_folder
from kdbench.run.runner import Runner, validate_cells
from kdbench.strategies.knowledge import scores_of_lists, teacher_top_n
from kdbench.training.teacher_file import HEADER, PREFIX, write_teacher_file
from kdbench.training.loop import TrainSettings
from kdbench.run.work import load_teacher, prepared_data

DEFAULT_K = 100


def export_teacher(output: str | Path, execution: Execution, dataset: str, teacher: str, k: int = DEFAULT_K,
                   embeddings: bool = True, teacher_train: TrainSettings = TrainSettings(),
                   data_path: str | None = None, protocol: str | None = None, teacher_seed: int = 0) -> Path:
    """Write `teacher`'s top-`k` lists (each user's, or each training query's, among the items outside
    its history, as every kdbench strategy's teacher knowledge: `knowledge.teacher_top_n`), their
    scores (`knowledge.scores_of_lists`) and, with `embeddings`, its item representations, to the
    folder `output`. The teacher comes from the runner's cache (trained and cached if absent)."""
    if teacher.strip().startswith(PREFIX):
        raise KdbenchError("export-teacher writes a teacher kdbench trains (MODEL:DIM), not a teacher file")
    folder = Path(output)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / HEADER).is_file())):
        raise KdbenchError(f"--output {folder} exists and is not a teacher file: choose a new folder")
    check_folder(execution.cache_dir, "--cache-dir")
    spec = BackboneSpec.parse(teacher)
    cell = Cell(dataset, spec, spec, TEACHER, teacher_seed, train=teacher_train, teacher_train=teacher_train,
                teacher_seed=teacher_seed, data_path=data_path, protocol=protocol or default_protocol(spec))
    validate_cells([cell], execution.device)
    data = prepared_data(cell, spec, cell.teacher_settings, execution.device, str(execution.cache_dir))
    if not 1 <= k <= data.n_items - 1:
        raise KdbenchError(f"--k must be in [1, {data.n_items - 1}] on {dataset} ({data.n_items} items), got {k}")
    family = family_of(spec)
    if embeddings and not family.has_representations(spec.model):
        raise KdbenchError(f"{spec.model} has no item representations kdbench can read: pass --no-embeddings")
    runner = Runner(cache_dir=execution.cache_dir, device=execution.device, log=progress_note,
                    plugins=execution.plugins, heal_cache=execution.heal_cache)
    artifact = runner.teachers([cell])[runner.teacher_key(cell)]
    if isinstance(artifact, Exception):
        raise KdbenchError(f"teacher {spec} failed to train: {artifact}")
    model = load_teacher(cell, artifact, execution.device, str(execution.cache_dir))
    adapter = family.context(data, model, model, execution.device).teacher
    items = teacher_top_n(adapter, data.history, k)  # users' training items, or queries' input items
    scores = scores_of_lists(adapter, items)
    table = None
    if embeddings:
        with torch.no_grad():
            table = adapter.representation_tables()[1].detach().float().cpu()
    header = {"dataset": dataset, "family": family.name, "protocol": cell.protocol, "split_seed": cell.split_seed,
              "fingerprint": data.fingerprint, "n_items": data.n_items,
              "source": f"kdbench export-teacher: {spec} (seed {teacher_seed}, cache key {artifact.key})"}
    return write_teacher_file(folder, header, items, scores, table)
