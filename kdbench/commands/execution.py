"""Where and how cells run: the device, the teacher cache, and the executor that spreads cells over
worker processes or a Ray cluster; and running a checked list of cells with them."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

import kdbench.run.runner
from kdbench.run.cells import Cell
from kdbench.families import get_protocol
from kdbench.executors import Executor, default_workers, make_executor
from kdbench.report import load_tuning
from kdbench.run.runner import Runner, validate_cells
from kdbench.strategies.base import method_names


@dataclass(frozen=True)
class Execution:
    """The settings every command that trains shares (the command line's location and executor flags)."""

    device: str = "cpu"
    cache_dir: str | Path = ".kdbench_cache"  # the teacher cache
    force: bool = False  # redo cells that already have a result
    replace_stale: bool = False  # redo only the cells whose stored run was made with other settings or code
    workers: int | None = None  # worker processes; None: one per core, never more than the tasks
    executor: str = "local"  # one of `executors.EXECUTORS`
    address: str | None = None  # with the Ray executor: the cluster to join (None: a private instance)
    plugins: tuple[str, ...] = ()  # plugin files (absolute paths) the workers import too
    heal_cache: bool = True  # a damaged teacher cache entry is moved aside and retrained (else: error)

    def executor_for(self, n_tasks: int) -> Executor:
        """The executor these settings name; by default one local worker per core, never more than tasks."""
        workers = self.workers or max(1, min(default_workers(), n_tasks))
        return make_executor(self.executor, workers, self.address, self.device)


def progress_note(message: str) -> None:
    """A progress line on stderr that does not break the progress bar."""
    tqdm.write(message, file=sys.stderr)


def resolve_strategies(names: list[str] | None) -> list[str] | None:
    """The strategies asked for: None for the default, every method for ['all']."""
    if names is None:
        return None
    return method_names() if names == ["all"] else names


def resolve_protocols(names: list[str] | None) -> list[str] | None:
    """The protocols asked for, each checked (an unknown name stops here), duplicates dropped."""
    if names is None:
        return None
    for name in names:
        get_protocol(name)
    return list(dict.fromkeys(names))


def execute_cells(cells: list[Cell], results_dir: Path, execution: Execution, check_stored: bool,
                  before_training: Callable[[], None] | None = None,
                  reuse_from: tuple[Path, ...] = (), nominal_teachers: bool = True) -> tuple[Runner, list[dict]]:
    """Validate `cells`, refuse to overwrite other settings' runs, run them on the executor:
    (runner, records). `check_stored`: a report will read every stored run, so stop at a damaged one now.
    `before_training()` runs once every check has passed, before the first cell trains. `reuse_from`:
    other results folders holding the same cells, whose current runs are copied instead of run again.
    `nominal_teachers=False`: cells that learn from no teacher get none (`Runner.nominal_teachers`)."""
    validate_cells(cells, execution.device)
    runner = Runner(results_dir, execution.cache_dir, execution.device, execution.force,
                    replace_stale=execution.replace_stale, log=progress_note,
                    plugins=execution.plugins, heal_cache=execution.heal_cache, reuse_from=reuse_from,
                    nominal_teachers=nominal_teachers)
    runner.check_no_overwrite(cells)
    runner.check_teacher_files(cells)
    if check_stored:
        for _ in runner.store.records():
            pass
        load_tuning(results_dir)
    if before_training is not None:
        before_training()
    runner.executor = execution.executor_for(
        len(cells) if execution.force else sum(not runner.is_done(c) for c in cells))
    try:
        records = kdbench.run.runner.run_cells(runner, cells)  # looked up here: tests stand in for it
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM (`kdbench.executors.lifetime`): say what stays
        interrupt.kept = (f"{len(runner.written)} cell(s) finished in this run are kept in {runner.store.runs}"
                          f" ({runner.reused} were already there)")
        raise
    finally:
        runner.executor.close()
    return runner, records


def failed_records(records: list[dict]) -> list[dict]:
    return [record for record in records if record.get("status") != "ok"]

