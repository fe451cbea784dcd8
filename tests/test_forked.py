"""A report's work split over forked processes (`report.forked`) gives what one process gives: the
run files read (`load.read_runs`: the same table, records and inspections, in file order, and the
same error on a damaged file) and the tables computed (`aggregation.aggregate`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import warnings
from pathlib import Path

import pandas as pd
import pytest
from test_cross_dataset import DENSE, SPARSE, write_runs

import kdbench.report.aggregation as aggregation
from kdbench.report.forked import MAX_WORKERS, RAY_CORE, WorkerLost, forked_map, worker_count
from kdbench.report.load import _contiguous_chunks, load_runs, read_runs
from kdbench.run.record import RunStore
from kdbench.store.reading import DamagedFile

# forked here, the workers must do the work: a lost worker (its tasks done again in this process) fails
pytestmark = pytest.mark.filterwarnings("error::kdbench.report.forked.WorkerLost")


@pytest.fixture(scope="module", autouse=True)
def forkable_process():
    """These tests fork the test process itself: skipped, named, where an earlier test left it unsafe
    to fork (a Ray driver that connected to a cluster: on Python 3.13 its native threads crash a
    forked copy, which `forked.worker_count` avoids). In the default order the probe forks fine."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", WorkerLost)
        try:
            forked_map(add, [1, 2], workers=2, shared=0)
        except WorkerLost:
            pytest.skip("a forked copy of this test process dies (native threads an earlier test left, "
                        "e.g. Ray's): run this file on its own")


COMMITTED = Path(__file__).resolve().parents[1] / "results" / "runs" / "ml-100k" / "BPR-64_to_BPR-5"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """The committed ml-100k BPR 64 -> 5 runs of a few strategies (defaults and tuned; 5 seeds a student)."""
    root = tmp_path_factory.mktemp("read") / "results"
    for label in ("scratch", "kd", "rrd@tuned", "teacher"):
        shutil.copytree(COMMITTED / label, root / "runs" / "ml-100k" / "BPR-64_to_BPR-5" / label)
    return root


def seed_and_users(path: Path, record: dict) -> tuple[str, int, int]:
    """An inspection: what it returns crosses back from the reading processes."""
    return path.name, record["seed"], len(record["per_user"]["user_ids"])


def test_worker_processes_read_what_one_process_reads_in_file_order(results):
    alone = read_runs(results, inspect=seed_and_users, workers=1)
    shared = read_runs(results, inspect=seed_and_users, workers=2)
    files = RunStore(results).files()
    assert len(files) == len(alone.table) >= 10
    assert [path for path, _ in shared.records] == [path for path, _ in alone.records] == files
    assert [record for _, record in shared.records] == [record for _, record in alone.records]
    assert "per_user" not in shared.records[0][1] and "test_users" not in shared.records[0][1]
    assert shared.inspected == alone.inspected == tuple(
        (path.name, json.loads(path.read_text())["seed"], 943) for path in files)
    plain = [column for column in alone.table.columns if column not in ("per_user", "train_interactions")]
    pd.testing.assert_frame_equal(shared.table[plain], alone.table[plain])
    for column in ("per_user", "train_interactions"):
        for mine, theirs in zip(shared.table[column], alone.table[column]):
            pd.testing.assert_series_equal(mine, theirs)


def test_a_damaged_file_found_by_a_worker_stops_the_read_naming_it(results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    damaged = RunStore(copy).files()[-1]
    damaged.write_text(damaged.read_text()[:1000])
    with pytest.raises(DamagedFile) as error:
        read_runs(copy, workers=2)
    assert error.value.path == damaged
    assert "not valid JSON" in str(error.value) and "truncated?" in str(error.value)


def test_chunks_keep_the_file_order_and_split_the_bytes_evenly():
    paths = [Path(f"f{i}") for i in range(10)]
    sizes = [5, 5, 5, 5, 100, 5, 5, 5, 5, 60]
    chunks = _contiguous_chunks(paths, sizes, 4)
    assert [path for chunk in chunks for path in chunk] == paths
    assert len(chunks) <= 4
    # a file goes where its first byte falls (quarters of 200 bytes): the 100-byte one starts at 20
    assert chunks == [paths[:5], paths[5:]]
    assert _contiguous_chunks(paths, [1] * 10, 4) == [paths[:3], paths[3:5], paths[5:8], paths[8:]]
    assert _contiguous_chunks(paths[:1], sizes[:1], 4) == [paths[:1]]


def test_the_datasets_tables_computed_by_worker_processes_equal_one_process(tmp_path, monkeypatch):
    write_runs(tmp_path, (*SPARSE, DENSE))
    runs = load_runs(tmp_path)
    alone = aggregation.aggregate(runs)
    monkeypatch.setattr(aggregation, "worker_count", lambda work, threshold: 2)
    shared = aggregation.aggregate(runs)
    assert list(shared["dataset"].unique()) == sorted((*SPARSE, DENSE))
    pd.testing.assert_frame_equal(shared, alone)


def add(shared: int, task: int) -> tuple[int, int]:
    return shared + task, os.getpid()


def call_shared(shared, task):
    return shared(task)


def test_forked_map_keeps_the_task_order_and_hands_the_shared_input_over_unpickled():
    results = forked_map(add, list(range(8)), workers=2, shared=100)
    assert [value for value, _ in results] == list(range(100, 108))
    assert os.getpid() not in {pid for _, pid in results}  # done by the workers
    square = lambda task: task * task  # noqa: E731  (a lambda cannot be pickled: the workers inherit it)
    assert forked_map(call_shared, [1, 2, 3], workers=2, shared=square) == [1, 4, 9]


def test_no_fork_below_the_threshold_or_beside_another_thread(monkeypatch):
    with monkeypatch.context() as alone:  # as in `report`'s process (earlier tests may leave threads)
        alone.setattr(threading, "active_count", lambda: 1)
        alone.delitem(sys.modules, RAY_CORE, raising=False)  # nor Ray loaded (an earlier test may have)
        assert worker_count(10, threshold=100) == 1
        assert worker_count(1000, threshold=100) == min(len(os.sched_getaffinity(0)), MAX_WORKERS)
        alone.setitem(sys.modules, RAY_CORE, object())  # Ray's core loaded: its native threads
        assert worker_count(1000, threshold=100) == 1
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert worker_count(1000, threshold=100) == 1  # its locks could stay held in a forked copy
    finally:
        release.set()
        other.join()


def square_in_the_parent_only(parent: int, task: int) -> int:
    if os.getpid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer ends a worker
    return task * task


def test_a_lost_worker_costs_time_not_the_result():
    with pytest.warns(WorkerLost, match="a worker process ended without its result"):
        assert forked_map(square_in_the_parent_only, [1, 2, 3], workers=2, shared=os.getpid()) == [1, 4, 9]


def fail_in_a_worker(shared: None, task: int) -> int:
    raise ValueError(f"task {task} is bad")


def test_an_error_raised_in_a_worker_is_raised_as_itself_not_retried():
    with pytest.raises(ValueError, match="task 1 is bad"):
        forked_map(fail_in_a_worker, [1, 2], workers=2)
