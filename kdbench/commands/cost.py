"""`cost`: the inference cost of every model shape of a suite, measured once per sitting (a teacher
and its students, interleaved; `kdbench.run.inference_cost`), written to RESULTS_DIR/cost/. Sequential
shapes are measured per query on their dataset only (no synthetic catalogues)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from kdbench.run import inference_cost
from kdbench.commands.execution import progress_note
from kdbench.data.loading import check_dataset
from kdbench.errors import KdbenchError
from kdbench.store.paths import check_folder
from kdbench.run.suites import expand, load_suite


def measure_costs(results_dir: str | Path, cache_dir: str | Path, suite_file: str | None, quick: bool, *,
                  catalogues: list[int], rounds: int, warmup: int, threads: int, min_seconds: float,
                  on_written: Callable[[Path], None] | None = None) -> list[Path]:
    """Measure every sitting of the suite on its dataset's catalogue and on synthetic `catalogues`
    (items each, at least `inference_cost.SYNTHETIC_USERS`), timing `rounds` interleaved calls of every
    target after `warmup` untimed ones (more rounds where calls are quick, to time about `min_seconds`)
    on `threads` torch threads: the files written, each also handed to `on_written` as soon as it is."""
    check_folder(results_dir, "--results-dir")
    check_folder(cache_dir, "--cache-dir")
    suite = load_suite(suite_file, quick=quick)
    sittings = inference_cost.sittings(expand(suite))  # every cell: its compressed shapes too
    if not sittings:
        raise KdbenchError(f"suite '{suite.name}' has no pairing to measure")
    for sitting in sittings:
        check_dataset(sitting.dataset, sitting.data_path)
    runs_dir = Path(results_dir) / "quick" if quick else Path(results_dir)
    written = []
    for sitting in sittings:
        payload = inference_cost.measure(sitting, catalogues, rounds, warmup, threads, cache_dir, min_seconds,
                                         log=progress_note)
        written.append(inference_cost.write(sitting, payload, runs_dir))
        if on_written is not None:
            on_written(written[-1])
    return written
