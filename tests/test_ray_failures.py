"""Issue 31, class 6: Ray failures end. An unreachable head is one line (exit 2) within
`ray_connect.PROBE_SECONDS` after start-up, a head that never answers within `CONNECT_SECONDS`; a
task whose worker process dies is retried, then recorded as lost; a cluster that stops answering
hands its running tasks back as lost instead of waiting for them."""

from __future__ import annotations

import importlib.util
import socket
import time

import pytest

from conftest import run_cli
from test_malformed import assert_one_line_exit_2, toy_run, workdir  # noqa: F401  (workdir: a fixture)

from kdbench.executors import ray_connect
from kdbench.errors import KdbenchError
from kdbench.executors import RayExecutor, WorkerLost

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")


def test_an_unreachable_head_is_one_line_within_the_probe_time(capsys, workdir):
    argv = toy_run(workdir, "--executor", "ray", "--address", "127.0.0.1:1")
    start = time.monotonic()
    code, _, err = run_cli(capsys, *argv)
    assert time.monotonic() - start < 2 * ray_connect.PROBE_SECONDS + 10  # data checks + the probe; no retries
    assert_one_line_exit_2(code, err, ["could not connect to the Ray cluster at '127.0.0.1:1'", "refused"])
    assert not list(workdir.rglob("*.json"))


def test_an_address_that_is_not_host_port_is_one_line(capsys, workdir):
    code, _, err = run_cli(capsys, *toy_run(workdir, "--executor", "ray", "--address", "nowhere"))
    assert_one_line_exit_2(code, err, ["Ray cluster", "nowhere"])


def test_a_head_that_accepts_but_never_answers_ends_within_the_connect_time(monkeypatch):
    monkeypatch.setattr(ray_connect, "CONNECT_SECONDS", 3)
    with socket.socket() as silent:  # listens (the kernel completes the handshake) but never speaks
        silent.bind(("0.0.0.0", 0))
        silent.listen(16)
        start = time.monotonic()
        with pytest.raises(KdbenchError, match="no answer within 3 s"):
            RayExecutor(f"127.0.0.1:{silent.getsockname()[1]}")
        assert time.monotonic() - start < 3 + 2 * ray_connect.PROBE_SECONDS


@pytest.fixture(scope="module")
def private_ray():
    executor = RayExecutor(None, workers=1)
    yield executor
    executor.close()


def test_a_task_whose_worker_dies_is_retried_then_recorded_lost(private_ray, tmp_path):
    markers = str(tmp_path)

    def dies(seed):  # dies the first time for seed 0 (then succeeds), every time for seed 99
        import os
        from pathlib import Path

        marker = Path(markers) / f"seed{seed}"
        if seed == 99 or not marker.exists():
            marker.touch()
            os._exit(1)
        return seed * 10

    results = dict(private_ray.map_unordered(dies, [0, 99]))
    assert results[0] == 0
    assert isinstance(results[1], WorkerLost) and "2 attempt(s)" in str(results[1])  # by position


def test_a_cluster_that_stops_answering_hands_its_running_tasks_back_as_lost(private_ray, monkeypatch):
    monkeypatch.setattr(ray_connect, "POLL_SECONDS", 0.5)
    monkeypatch.setattr(private_ray, "_cluster_problem", lambda: "10.0.0.1:6379: Connection refused")

    def sleeps(seconds):
        import time

        time.sleep(seconds)
        return seconds

    start = time.monotonic()
    results = dict(private_ray.map_unordered(sleeps, [600]))
    assert time.monotonic() - start < 60
    assert isinstance(results[0], WorkerLost) and "Connection refused" in str(results[0])


def test_a_reachable_head_is_probed_without_error():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        assert ray_connect.reachable(f"127.0.0.1:{listening.getsockname()[1]}") is None
    assert "not HOST:PORT" in ray_connect.reachable("localhost:http")
