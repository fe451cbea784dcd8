"""The command line: every user mistake is one line on stderr, exit code 2, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import INTER_HEADER, run_cli, write_interactions
from kdbench.strategies import STRATEGIES
from kdbench.strategies.scratch import Scratch


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory; KDBENCH_CACHE points into it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _bad_atomic_file(root, body: str):
    (root / "bad").mkdir()
    (root / "bad" / "bad.inter").write_text(body)
    return str(root / "bad")


USER_ERRORS = {
    # id: (arguments, fragments the error line names)
    "unknown-dataset": (["--dataset", "no-such-data"], ["unknown dataset 'no-such-data'", "ml-100k"]),
    "unknown-teacher": (["--teacher", "NoSuchNet:8"], ["unknown model 'NoSuchNet'", "BPR", "LightGCN"]),
    "unknown-student": (["--student", "NoSuchNet:8"], ["unknown model 'NoSuchNet'", "BPR", "LightGCN"]),
    "malformed-backbone": (["--student", "BPR:x"], ["malformed backbone 'BPR:x'", "MODEL:DIM"]),
    "unknown-strategy": (["--strategy", "nosuch"], ["unknown strategy 'nosuch'", "scratch"]),
    "missing-data-path": (["--dataset", "toy", "--data-path", "no/such/dir"], ["'no/such/dir' does not exist"]),
    "epochs-zero": (["--epochs", "0"], ["--epochs", "must be >= 1, got 0"]),
    "epochs-not-a-number": (["--epochs", "abc"], ["--epochs", "expected a positive integer, got 'abc'"]),
    "negative-lr": (["--lr", "-1"], ["--lr", "must be > 0, got -1"]),
    "negative-hp": (["--hp", "weight=-1"], ["hyperparameter 'weight'", "must be >= 0, got '-1'"]),
    "non-numeric-hp": (["--hp", "weight=abc"], ["hyperparameter 'weight'", "must be float, got 'abc'"]),
    "unknown-hp": (["--hp", "nosuchkey=1"], ["unknown hyperparameter 'nosuchkey'", "valid: weight"]),
    "hp-without-value": (["--hp", "weight"], ["--hp", "expected KEY=VALUE, got 'weight'"]),
    "unknown-device": (["--device", "tpu"], ["--device", "invalid choice: 'tpu'", "cpu", "cuda"]),
    "missing-suite": (["--suite", "no-such-suite.yaml"], ["suite file 'no-such-suite.yaml' does not exist"]),
}


def _assert_one_error_line(code: int, err: str, fragments: list[str]) -> None:
    assert code == 2
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(("kdbench: error:", "python -m kdbench run: error:", "python -m kdbench: error:"))
    if last.startswith("kdbench: error:"):
        assert err.strip() == last  # our own errors are exactly one line
    for fragment in fragments:
        assert fragment in last


@pytest.mark.parametrize("args, fragments", list(USER_ERRORS.values()), ids=list(USER_ERRORS))
def test_a_user_error_is_one_line_exit_2_and_writes_nothing(capsys, workdir, args, fragments):
    # small settings first (the case's own arguments come later and win), should anything slip through
    small = ["--teacher", "BPR:4", "--student", "BPR:2", "--epochs", "1", "--teacher-epochs", "1",
             "--results-dir", "results"]
    code, out, err = run_cli(capsys, "run", *small, *args)
    _assert_one_error_line(code, err, fragments)
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    "body, fragments",
    [
        ("user_id:banana\titem_id:token\n1\t2\n", ["malformed atomic file", "user_id:banana", "token"]),
        (INTER_HEADER + "\n1\t2\t3\t4\n1\t3\t4\t5\t6\n", ["malformed atomic file", "line 3 has 5 fields, header has 4"]),
        (INTER_HEADER + "\n" + "1\t2\t3\t4\n" * 1500 + "1\t3\tfive\t4\n",
         ["malformed atomic file", "line 1502, column 'rating' is not a float: 'five'"]),
    ],
    ids=["bad-header-type", "too-many-fields", "non-numeric-float-deep-in-the-file"],
)
def test_a_malformed_atomic_file_is_one_line_exit_2_and_writes_nothing(capsys, workdir, body, fragments):
    data_path = _bad_atomic_file(workdir, body)
    code, _, err = run_cli(capsys, "run", "--dataset", "bad", "--data-path", data_path,
                           "--results-dir", "results")
    _assert_one_error_line(code, err, fragments)
    assert [p.name for p in workdir.iterdir()] == ["bad"]
    assert [p.name for p in (workdir / "bad").iterdir()] == ["bad.inter"]


def test_a_missing_plugin_file_is_one_line_exit_2(capsys, workdir):
    code, _, err = run_cli(capsys, "--plugin", "no_such_plugin.py", "list")
    _assert_one_error_line(code, err, ["plugin file 'no_such_plugin.py' does not exist"])


def test_report_without_runs_is_one_line_exit_2(capsys, workdir):
    code, _, err = run_cli(capsys, "report", "--results-dir", "results")
    _assert_one_error_line(code, err, ["no runs under", "python -m kdbench run"])
    assert list(workdir.iterdir()) == []


def test_an_unknown_command_is_refused_by_argparse(capsys, workdir):
    code, _, err = run_cli(capsys, "train")
    _assert_one_error_line(code, err, ["invalid choice: 'train'", "run", "list", "report"])


def test_a_user_error_in_a_real_process_is_one_line_on_stderr_and_exit_2(tmp_path):
    env = {**os.environ, "KDBENCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "kdbench", "run", "--dataset", "no-such-data"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("kdbench: error: unknown dataset 'no-such-data'")
    assert list(tmp_path.iterdir()) == []


# -- list and help ---------------------------------------------------------------------------


def test_list_shows_datasets_backbones_and_every_registered_strategy(capsys, workdir):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "ml-100k" in out
    backbones = next(line for line in out.splitlines() if "BPR" in line).strip().split(", ")
    assert "BPR" in backbones and "LightGCN" in backbones
    for name in STRATEGIES.names():
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
    assert list(workdir.iterdir()) == []


def test_list_all_datasets_names_the_downloadable_ones(capsys, workdir):
    code, out, _ = run_cli(capsys, "list", "--all-datasets")
    assert code == 0 and "ml-1m" in out


@pytest.mark.parametrize("command", ["run", "list", "report"])
def test_help_works_for_every_command(capsys, command):
    code, out, err = run_cli(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: python -m kdbench {command}")
    assert err == ""


def test_run_help_documents_the_training_options(capsys):
    _, out, _ = run_cli(capsys, "run", "--help")
    for option in ("--dataset", "--data-path", "--teacher", "--student", "--strategy", "--seed", "--hp",
                   "--epochs", "--lr", "--results-dir", "--cache-dir", "--force"):
        assert option in out


# -- a real run ------------------------------------------------------------------------------


@pytest.fixture
def toy_run_args(workdir):
    write_interactions(workdir / "data" / "toy.inter")
    return ["run", "--dataset", "toy", "--data-path", str(workdir / "data"), "--teacher", "BPR:16",
            "--student", "BPR:4", "--epochs", "2", "--batch-size", "4096", "--teacher-epochs", "3",
            "--teacher-batch-size", "4096", "--results-dir", "results"]


@pytest.mark.slow
def test_a_run_prints_its_result_and_writes_it(capsys, workdir, toy_run_args):
    code, out, err = run_cli(capsys, *toy_run_args)
    assert code == 0, err
    assert "toy BPR:16->BPR:4 scratch seed 0: NDCG@10" in out
    record = json.loads((workdir / "results" / "runs" / "toy" / "BPR-16_to_BPR-4" / "scratch" / "seed0.json")
                        .read_text())
    assert record["status"] == "ok"
    assert record["config"]["train"]["max_epochs"] == 2
    assert record["config"]["teacher_train"]["max_epochs"] == 3  # the teacher's own flags
    (key,) = [p.name for p in (workdir / "cache" / "teachers").iterdir()]  # $KDBENCH_CACHE
    assert (f"teacher BPR:16 (seed 0) on toy: lr 0.001, batch 4096, max epochs 3, patience 10; "
            f"cache key {key}: trained now") in out


def test_the_single_run_training_flags_are_the_students_and_the_teacher_has_its_own():
    from kdbench.cli import _train_settings, build_parser
    from kdbench.training.loop import TrainSettings

    args = build_parser().parse_args(["run", "--epochs", "2", "--lr", "0.01", "--teacher-patience", "4"])
    assert _train_settings(args) == TrainSettings(max_epochs=2, learning_rate=0.01)
    assert _train_settings(args, "teacher_") == TrainSettings(patience=4)  # not the student's 2 epochs


def test_the_validation_cadence_has_a_flag_for_the_student_and_one_for_the_teacher():
    from kdbench.cli import _train_settings, build_parser
    from kdbench.training.loop import TrainSettings

    args = build_parser().parse_args(["run", "--eval-every", "5", "--teacher-eval-every", "2"])
    assert _train_settings(args) == TrainSettings(eval_every=5)
    assert _train_settings(args, "teacher_") == TrainSettings(eval_every=2)


@pytest.mark.slow
def test_a_damaged_cached_teacher_heals_and_the_next_run_completes(capsys, workdir, toy_run_args):
    assert run_cli(capsys, *toy_run_args)[0] == 0
    (entry,) = (workdir / "cache" / "teachers").iterdir()
    weights = entry / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated: torch's "failed finding central directory"
    code, out, err = run_cli(capsys, *toy_run_args, "--strategy", "scratch,kd", "--seed", "1")
    assert code == 0, err
    assert out.count("toy BPR:16->BPR:4 ") == 2  # both cells of the pairing completed
    assert "trained now (the cache entry was damaged: weights.pt does not match the checksum" in out
    assert f"{entry} is damaged" in err
    assert [p.name for p in (workdir / "cache" / "teachers" / ".damaged").iterdir()] == [f"{entry.name}.0"]


def test_a_failed_cell_gives_exit_code_1(capsys, workdir, toy_run_args, monkeypatch):
    def explode(self, batch):
        raise RuntimeError("boom")

    monkeypatch.setattr(Scratch, "loss", explode)
    code, out, err = run_cli(capsys, *toy_run_args)
    assert code == 1
    assert "FAILED RuntimeError: boom" in out
    assert "1 cell(s) failed" in err
    assert "Traceback" not in err
