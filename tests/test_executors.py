"""Executors: the same cells give byte-identical metrics in one process, in local worker processes and
as Ray tasks; a teacher is trained once; a worker killed mid-cell costs a retry, never the suite."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

from kdbench.run.cells import Cell
from kdbench.executors import LocalExecutor, RayExecutor, SerialExecutor, WorkerLost, make_executor
from kdbench.families import BackboneSpec
from kdbench.run.runner import Runner
from kdbench.training.loop import TrainSettings

SMALL = TrainSettings(max_epochs=3, batch_size=4096)
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (extra 'ray')")
METRIC_FIELDS = ("test", "per_user", "valid_ndcg@10", "hparams")

# A plugin strategy whose worker process kills itself (SIGKILL, as the OOM killer or a lost node
# would) the first time each seed runs, or every time for seed 99.
KILLER_PLUGIN = textwrap.dedent(
    '''
    import os, signal
    from pathlib import Path

    from kdbench.strategies import DistillationStrategy, register_strategy

    MARKERS = Path({markers!r})


    @register_strategy("killer", family="baseline", paper="a test's worker killer")
    class Killer(DistillationStrategy):
        defaults = {{"weight": 0.0}}
        needs_teacher = False

        def prepare(self):
            marker = MARKERS / f"seed{{self.context.seed}}"
            if self.context.seed == 99 or not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)

        def loss(self, batch):
            return None
    '''
)


def _cells(toy_dir, strategies=("scratch", "kd"), seeds=(0, 1)) -> list[Cell]:
    common = dict(dataset="toy", teacher=BackboneSpec("BPR", 16), student=BackboneSpec("BPR", 4), train=SMALL,
                  data_path=str(toy_dir))
    return [Cell(strategy="teacher", seed=0, **common)] + [
        Cell(strategy=name, seed=seed, **common) for seed in seeds for name in strategies
    ]


def _metrics(records) -> list[str]:
    return [json.dumps({k: r.get(k) for k in ("label", "seed", "status", *METRIC_FIELDS)}, sort_keys=True)
            for r in records]


def _run(root: Path, cells, executor, plugins=()) -> list[dict]:
    runner = Runner(root / "results", root / "cache", executor=executor, plugins=plugins)
    try:
        return runner.run_all(cells)
    finally:
        executor.close()


class CountingExecutor:
    """Wraps an executor, keeping every task it was handed."""

    def __init__(self, inner):
        self.inner, self.workers, self.tasks = inner, inner.workers, []

    def map_unordered(self, fn, tasks, resources=None):
        tasks = list(tasks)  # the runner's tasks may be a lazy iterator (claimed as they are pulled)
        self.tasks.extend(tasks)
        return self.inner.map_unordered(fn, tasks, resources)

    def close(self):
        self.inner.close()


@pytest.fixture(scope="module")
def serial_records(toy_dir, tmp_path_factory):
    return _run(tmp_path_factory.mktemp("serial"), _cells(toy_dir), SerialExecutor())


@pytest.mark.slow
def test_two_local_workers_give_the_same_metrics_as_one_process(toy_dir, tmp_path, serial_records):
    counting = CountingExecutor(LocalExecutor(2))
    records = _run(tmp_path, _cells(toy_dir), counting)
    assert all(r["status"] == "ok" for r in records)
    assert _metrics(records) == _metrics(serial_records)
    # the teacher shared by four students was trained exactly once, before them
    teacher_tasks = [t for t in counting.tasks if t.cell.is_teacher]
    assert len(teacher_tasks) == 1 and counting.tasks[0].cell.is_teacher
    assert len(list((tmp_path / "cache" / "teachers").iterdir())) == 1


@pytest.mark.slow
@needs_ray
def test_a_ray_cluster_gives_the_same_metrics_and_trains_the_teacher_once(toy_dir, tmp_path, serial_records):
    counting = CountingExecutor(RayExecutor(workers=2))
    records = _run(tmp_path, _cells(toy_dir), counting)
    assert _metrics(records) == _metrics(serial_records)
    assert sum(t.cell.is_teacher for t in counting.tasks) == 1


@pytest.fixture(scope="module")
def killer(tmp_path_factory) -> tuple[str, Path]:
    """The killer plugin (registered once per test process) and the folder of its markers."""
    from kdbench.registry import load_plugin_file

    root = tmp_path_factory.mktemp("killer")
    markers = root / "markers"
    markers.mkdir()
    plugin = root / "killer_plugin.py"
    plugin.write_text(KILLER_PLUGIN.format(markers=str(markers)))
    load_plugin_file(plugin)  # the driver validates the cells with the plugin's strategy too
    return str(plugin), markers


@pytest.mark.slow
@pytest.mark.parametrize("kind, seed", [("local", 0), pytest.param("ray", 1, marks=needs_ray)])
def test_a_worker_killed_mid_cell_is_retried_and_the_suite_completes(toy_dir, tmp_path, killer, kind, seed):
    plugin, markers = killer
    cells = _cells(toy_dir, strategies=("killer", "scratch"), seeds=(seed, 99))
    executor = LocalExecutor(2) if kind == "local" else RayExecutor(workers=2)
    records = _run(tmp_path, cells, executor, plugins=(plugin,))
    status = {(r["label"], r["seed"]): r["status"] for r in records}
    assert status == {("teacher", 0): "ok", ("killer", seed): "ok", ("scratch", seed): "ok",
                      ("killer", 99): "failed", ("scratch", 99): "ok"}
    assert (markers / f"seed{seed}").exists()  # killed once, then retried and finished
    failed = next(r for r in records if r["status"] == "failed")
    assert "WorkerLost" in failed["error"]
    stored = list((tmp_path / "results" / "runs").rglob("*.json"))
    assert len(stored) == len(cells)


def test_the_executor_flags_pick_the_executor():
    assert isinstance(make_executor("local", 1), SerialExecutor)
    local = make_executor("local", 2)
    assert isinstance(local, LocalExecutor) and local.workers == 2
    local.close()


def test_an_unknown_executor_is_a_user_error():
    from kdbench.errors import KdbenchError

    with pytest.raises(KdbenchError, match="unknown executor 'slurm': valid: local, ray"):
        make_executor("slurm")


def test_a_serial_executor_hands_exceptions_over_instead_of_raising():
    results = dict(SerialExecutor().map_unordered(lambda x: 1 / x, [1, 0, 2]))
    assert results[0] == 1 and isinstance(results[1], ZeroDivisionError) and results[2] == 0.5
    assert issubclass(WorkerLost, RuntimeError)


def _slow_square(x):
    import time

    time.sleep(0.5)
    return x * x


def test_a_worker_whose_driver_went_away_exits_quietly(capfd):
    """A killed driver closes the worker's pipe: the worker must exit without a traceback, not hang."""
    import multiprocessing

    from kdbench.executors.local import _worker_loop

    context = multiprocessing.get_context("spawn")
    driver_end, worker_end = context.Pipe()
    worker = context.Process(target=_worker_loop, args=(worker_end,), daemon=True)
    worker.start()
    worker_end.close()
    driver_end.send((_slow_square, 3))
    driver_end.close()  # the driver dies while the task runs
    worker.join(timeout=60)
    assert worker.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err


@needs_ray
def test_a_private_ray_instance_runs_its_tasks_at_normal_priority():
    """Ray's default worker niceness (15) starves its tasks next to any other process; ours use 0.
    (A lambda: Ray pickles it by value, as the workers cannot import this test module.)"""
    executor = RayExecutor(None, workers=1)
    try:
        assert [result for _, result in executor.map_unordered(lambda _: __import__("os").nice(0), [0, 1])] == [0, 0]
    finally:
        executor.close()


def test_local_workers_pull_the_next_task_only_when_one_is_free():
    """The runner claims a cell when the executor pulls its task: two workers must have pulled two
    tasks, not all of them, when the first result arrives, and each later pull follows a result."""
    pulled: list[int] = []

    def tasks():
        for x in range(5):
            pulled.append(x)
            yield x

    executor = LocalExecutor(2)
    try:
        pulled_at_each_result = [len(pulled) for _ in executor.map_unordered(_slow_square, tasks())]
    finally:
        executor.close()
    assert pulled_at_each_result[0] == 2
    assert pulled_at_each_result == sorted(pulled_at_each_result) and pulled_at_each_result[-1] == 5
    assert all(count <= 2 + position for position, count in enumerate(pulled_at_each_result))
