"""`kdbench verify`: stored runs parse, their identities are current (or flagged stale), and the
leaderboard files are what `report` writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdbench.run.cells import Cell
from kdbench.cli import main
from kdbench.families import BackboneSpec
from kdbench.run.record import RunStore, base_record
from kdbench.report import write_reports

TEACHER, STUDENT = BackboneSpec("BPR", 16), BackboneSpec("BPR", 4)
ROOT = Path(__file__).resolve().parents[1]

# `kdbench verify` with its runs read by two forked processes, whatever their size; a worker lost
# (and its work done again in the calling process) is an error here, not a warning
TWO_READERS_VERIFY = """
import sys, warnings
import kdbench.report.load as load
from kdbench.report.forked import WorkerLost
from kdbench.cli import main
load.worker_count = lambda work, threshold: 2
warnings.simplefilter("error", WorkerLost)
sys.exit(main(sys.argv[1:]))
"""


def _record(strategy: str, seed: int, ndcg: float) -> dict:
    cell = Cell("ml-100k", TEACHER, STUDENT, strategy, seed)
    return base_record(cell, "cpu") | {
        "status": "ok", "test": {"ndcg@10": ndcg, "ndcg@20": ndcg, "recall@10": ndcg, "recall@20": ndcg},
        "per_user": {"user_ids": [1, 2, 3], "ndcg@10": [ndcg, ndcg / 2 + seed / 50, ndcg * 1.5 - seed / 70]},
        "cost": {"params": 10_500}, "wall_seconds": 1.0,
        "training": {"seconds_per_epoch": 0.1, "epochs_run": 3, "best_epoch": 2, "hit_epoch_cap": False},
        "beyond": {"itemcoverage@10": 0.3, "averagepopularity@10": 120.0, "tailpercentage@10": 0.05,
                   "giniindex@10": 0.9, "tail_ratio": 0.8},
        "test_users": {"train_interactions": [5, 9, 30]},
    }


@pytest.fixture(scope="module")
def consistent(tmp_path_factory):
    """A consistent results folder: current records and the leaderboard report writes from them."""
    store = RunStore(tmp_path_factory.mktemp("consistent") / "results")
    for seed in (0, 1):
        for strategy, ndcg in (("scratch", 0.20), ("kd", 0.23)):
            record = _record(strategy, seed, ndcg + seed / 37)
            store.write(record["dataset"], record["pairing"], record["label"], seed, record)
    write_reports(store.root, store.root, command="python -m kdbench run --suite s.yaml", wall_seconds=12.0,
                  plot=False)
    return store.root


@pytest.fixture
def results(consistent, tmp_path):
    shutil.copytree(consistent, tmp_path / "results")
    return tmp_path / "results"


def verify(capsys, results, *extra: str) -> tuple[int, str]:
    code = main(["verify", "--results-dir", str(results), *extra])
    return code, capsys.readouterr().out


def test_a_consistent_results_folder_verifies(capsys, results):
    code, out = verify(capsys, results)
    assert code == 0, out
    assert out.strip().endswith("4 run file(s) parse, 0 stale, 0 error(s); leaderboards match report")


def test_an_edited_leaderboard_fails_verification_naming_the_file_and_line(capsys, results):
    board = results / "leaderboard.md"
    board.write_text(board.read_text().replace("scratch", "scrotch", 1))
    code, out = verify(capsys, results)
    assert code == 1
    assert "leaderboard.md differs from what `report` writes now (line" in out


def test_a_damaged_run_file_fails_verification_naming_it(capsys, results):
    path = next(RunStore(results).runs.rglob("seed1.json"))
    path.write_text(path.read_text()[:50])
    code, out = verify(capsys, results)
    assert code == 1
    assert f"error: damaged file {path}: not valid JSON" in out


def test_a_run_made_with_other_settings_is_flagged_stale_and_fails_only_when_strict(capsys, results):
    path = next(RunStore(results).runs.rglob("kd/seed0.json"))
    record = json.loads(path.read_text())
    record["config"]["strategy_code"] = "0" * 12  # as if made by an earlier version of the loss
    path.write_text(json.dumps(record))
    code, out = verify(capsys, results)
    assert code == 0
    assert f"stale: {path}: made with other strategy_code than the current code gives" in out
    code, out = verify(capsys, results, "--strict")
    assert code == 1


def test_a_finished_run_without_the_sections_runs_now_record_is_stale(capsys, results):
    """A record an older writer made (no beyond-accuracy metrics, no test users' training counts) is
    not current even with a current `config`: `run --replace-stale` makes it again."""
    path = next(RunStore(results).runs.rglob("scratch/seed1.json"))
    record = json.loads(path.read_text())
    del record["beyond"], record["test_users"]
    path.write_text(json.dumps(record))
    write_reports(results, results, command="python -m kdbench run --suite s.yaml", wall_seconds=12.0, plot=False)
    code, out = verify(capsys, results)
    assert code == 0
    assert f"stale: {path}: made by an older writer, without beyond, test_users" in out
    assert out.strip().endswith("4 run file(s) parse, 1 stale, 0 error(s); leaderboards match report")


def test_every_damaged_run_file_is_named_not_only_the_first(capsys, results):
    """The rebuild stops at the first damaged run; verify then checks file by file and names each."""
    paths = sorted(RunStore(results).runs.rglob("seed*.json"))[:2]
    for path in paths:
        path.write_text("{")
    code, out = verify(capsys, results)
    assert code == 1
    for path in paths:
        assert f"error: damaged file {path}: not valid JSON" in out
    assert out.strip().endswith("2 run file(s) parse, 0 stale, 2 error(s)")


def test_each_run_file_is_read_once(capsys, results, monkeypatch):
    """A real catalogue's record is megabytes of per-user JSON: the check, the leaderboard and the page
    share one read of each file."""
    import kdbench.run.record as record_module

    reads = []
    real = record_module.read_mapping
    monkeypatch.setattr(record_module, "read_mapping", lambda path, advice="": reads.append(path) or real(path, advice))
    code, out = verify(capsys, results)
    assert code == 0, out
    runs = sorted(RunStore(results).files())
    assert len(runs) == 4 and sorted(reads) == runs


def test_runs_checked_in_reading_processes_give_the_same_verdict(capsys, results):
    """Above `PARALLEL_READ_BYTES` the records are read, and checked, by worker processes: the
    findings made there (a stale run, every file counted) come back whole. Forked from a fresh
    process, as `verify` runs: this one holds threads earlier tests left (Ray's), beside which a
    forked worker may crash (`worker_count` declines to fork there); a lost worker fails the check."""
    path = next(RunStore(results).runs.rglob("kd/seed0.json"))
    record = json.loads(path.read_text())
    record["config"]["strategy_code"] = "0" * 12
    path.write_text(json.dumps(record))
    alone = verify(capsys, results)
    shared = subprocess.run([sys.executable, "-c", TWO_READERS_VERIFY, "verify", "--results-dir", str(results)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (shared.returncode, shared.stdout) == alone, shared.stderr
    assert f"stale: {path}: made with other strategy_code than the current code gives" in shared.stdout
    assert shared.stdout.strip().endswith("4 run file(s) parse, 1 stale, 0 error(s); leaderboards match report")
