"""A suite killed mid-way and rerun completes its grid with no cell lost or run twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import write_interactions
from kdbench.run.suites import expand, load_suite

SUITE = {
    "name": "toy",
    "datasets": ["toy"],
    "seeds": [0, 1, 2],
    "strategies": ["scratch", "kd"],
    "train": {"max_epochs": 3, "batch_size": 4096, "patience": 10},
    "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
}


@pytest.fixture
def suite_dir(tmp_path):
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({**SUITE, "data_path": str(tmp_path / "data")}))
    return tmp_path


def _command(root: Path) -> list[str]:
    return [sys.executable, "-m", "kdbench", "run", "--suite", str(root / "suite.yaml"),
            "--results-dir", str(root / "results"), "--cache-dir", str(root / "cache")]


def _finished(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in (root / "results" / "runs").rglob("seed*.json")}


def test_the_suite_expands_to_teacher_plus_strategies_times_seeds(suite_dir):
    cells = expand(load_suite(suite_dir / "suite.yaml"))
    assert len(cells) == 1 + 2 * 3
    assert [c.label for c in cells[:3]] == ["teacher", "scratch", "kd"]
    assert {c.seed for c in cells[1:]} == {0, 1, 2}


@pytest.mark.slow
def test_a_killed_suite_resumes_without_losing_or_repeating_a_cell(suite_dir):
    process = subprocess.Popen(_command(suite_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 240
    while len(_finished(suite_dir)) < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = _finished(suite_dir)
    assert 3 <= len(before) < 7, "the kill should land mid-way through the grid"

    rerun = subprocess.run(_command(suite_dir), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = _finished(suite_dir)
    assert len(after) == 7  # no cell lost
    for path, content in before.items():
        assert after[path] == content  # finished cells were not run again
    assert (suite_dir / "results" / "leaderboard.md").is_file()
    assert not list((suite_dir / "results").rglob("*.tmp"))  # a write cut off by the kill is cleared

    # a third invocation has nothing left to do
    again = subprocess.run(_command(suite_dir), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert _finished(suite_dir) == after


@pytest.mark.slow
def test_a_cell_killed_mid_training_continues_at_its_last_kept_epoch(tmp_path):
    """The worker is killed once the student cell kept an epoch (`training.resume`); the rerun
    continues there and writes the record a straight run writes (metrics, per-user values, curve)."""
    suite = {**SUITE, "seeds": [0], "strategies": ["kd"],
             "train": {"max_epochs": 60, "batch_size": 64, "patience": 1000, "eval_every": 2},
             "teacher_train": {"max_epochs": 5, "batch_size": 4096}}
    cache = tmp_path / "cache"  # one teacher for both folders, trained by the straight run

    def command(root: Path) -> list[str]:
        return [*_command(root)[:-1], str(cache)]

    roots = {}
    for name in ("straight", "killed"):
        root = roots[name] = tmp_path / name
        write_interactions(root / "data" / "toy" / "toy.inter")
        (root / "suite.yaml").write_text(yaml.safe_dump({**suite, "data_path": str(root / "data")}))
    straight = subprocess.run(command(roots["straight"]), capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr
    assert not list(cache.glob("resume/*.pt"))

    root = roots["killed"]
    process = subprocess.Popen(command(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 300
    while not list(cache.glob("resume/*.pt")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # a few more epochs, kept or not
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    kept = list(cache.glob("resume/*.pt"))
    assert kept and not _finished(root).get(root / "results" / "runs" / "toy" / "BPR-8_to_BPR-4" / "kd" / "seed0.json")
    rerun = subprocess.run(command(root), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert not list(cache.glob("resume/*.pt"))  # removed once the cell ended

    import json

    def compared(folder):
        record = json.loads(next((folder / "results" / "runs").rglob("kd/seed0.json")).read_text())
        return (record["test"], record["per_user"], record["training"]["valid_curve"],
                record["training"]["best_epoch"], record["training"]["epochs_run"])

    assert compared(root) == compared(roots["straight"])
    import re

    log = next((root / "results" / "runs").rglob("kd/seed0.log")).read_text()
    assert int(re.search(r"epoch (\d+)", log).group(1)) > 2  # the rerun began after the kept epoch
