"""kdbench.training.heap: the workers' glibc settings keep freed memory (no page faults for a block
freed and allocated again), change no value, and are named in the records."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")

# Allocates and frees a 40 MiB tensor 20 times (a step's dense gradient; above glibc's largest mmap
# threshold, 32 MiB), then trains a small BPR on random batches; prints the page faults of the last 10
# rounds (glibc's heap takes a few rounds to settle: measured, 2-8) and a digest of the trained weights.
PROBE = """
import hashlib, json, resource, sys, torch
from kdbench.training.heap import allocator, keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.manual_seed(0)
for round in range(20):
    if round == 10:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(10 * 2**20)
    del block
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
users, items = torch.nn.Embedding(3000, 64), torch.nn.Embedding(5000, 64)
optimizer = torch.optim.Adam([*users.parameters(), *items.parameters()], lr=0.01)
for _ in range(5):
    u, i, j = torch.randint(3000, (512,)), torch.randint(5000, (512,)), torch.randint(5000, (512,))
    loss = -torch.nn.functional.logsigmoid((users(u) * (items(i) - items(j))).sum(1)).mean()
    optimizer.zero_grad(); loss.backward(); optimizer.step()
digest = hashlib.sha256(users.weight.detach().numpy().tobytes() + items.weight.detach().numpy().tobytes()).hexdigest()
print(json.dumps({"applied": applied, "allocator": allocator(), "faults": faults, "digest": digest}))
"""


def _probes(*modes: str) -> list[dict]:
    """The probe's output in a fresh process per mode, the processes side by side."""
    processes = [subprocess.Popen([sys.executable, "-c", PROBE, mode], stdout=subprocess.PIPE, text=True)
                 for mode in modes]
    outputs = [process.communicate()[0] for process in processes]
    assert all(process.returncode == 0 for process in processes)
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


@glibc
def test_kept_memory_saves_the_page_faults_and_changes_no_value():
    kept, default = _probes("keep", "default")
    assert kept["applied"] and kept["allocator"] == "glibc: freed memory kept"
    assert default["allocator"] == "default"
    # 10 x 40 MiB: the default maps fresh pages every time (10,240 faults a block of 4 KiB pages)
    assert default["faults"] > 10 * 10240 * 0.9
    assert kept["faults"] < 10240  # the settled heap's pages, reused
    assert kept["digest"] == default["digest"]


@glibc
def test_a_run_records_the_allocator_its_worker_trained_with(tmp_path):
    from dataclasses import replace

    from kdbench.families import BackboneSpec
    from kdbench.run.cells import Cell
    from kdbench.run.runner import Runner
    from kdbench.training.loop import TrainSettings

    cell = Cell("ml-100k", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "scratch", seed=0,
                train=TrainSettings(max_epochs=1, batch_size=8192))
    record = Runner(tmp_path / "results", tmp_path / "cache", nominal_teachers=False).run(replace(cell))
    assert record["status"] == "ok" and record["environment"]["allocator"] == "glibc: freed memory kept"


def test_the_leaderboard_header_counts_the_runs_of_each_allocator_once():
    header = json.loads((Path(__file__).resolve().parents[1] / "results" / "leaderboard.json").read_text())["header"]
    assert "allocator" not in header["environment"]  # the set of values would repeat the counts' names
    assert set(header["allocators"]) <= {"default", "glibc: freed memory kept"}
    assert sum(header["allocators"].values()) == header["n_runs"]
