"""benchmarks/epoch_schedule.py: an annealed strategy's epoch timed at the given points of its schedule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_one_row_per_epoch_with_the_temperature_that_epoch_anneals_to():
    env = dict(os.environ, KDBENCH_BENCH_SMOKE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "benchmarks.epoch_schedule", "htd", "1,41", "synthetic-tiny"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| htd")]
    assert [row[1] for row in rows] == ["1", "41"]
    # HTD's defaults: T = 1 * (1e-10) ** ((epoch - 1) / 100)
    assert float(rows[0][2]) == 1.0 and abs(float(rows[1][2]) - 1e-4) < 1e-7
    assert all(float(row[3]) > 0 and float(row[5].rstrip(" |")) > 0 for row in rows)


def test_usage_without_arguments():
    done = subprocess.run([sys.executable, "-m", "benchmarks.epoch_schedule"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode != 0 and "usage: python -m benchmarks.epoch_schedule" in done.stderr
