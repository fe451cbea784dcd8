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
