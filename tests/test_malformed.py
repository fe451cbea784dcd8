"""A corpus of malformed inputs: each ends in one line on stderr, exit code 2, no traceback, and
nothing written (or, for a damaged teacher cache entry, in healing).

Classes: data files, flags and paths, suite files, plugin files, stored results (run records,
leaderboard metadata, tuning files), teacher cache entries. Every case runs `kdbench.cli.main`
in-process and fails before anything trains, so the corpus stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest
import yaml

from conftest import INTER_HEADER, run_cli, write_interactions

SMALL = ["--teacher", "BPR:16", "--student", "BPR:4", "--epochs", "1", "--teacher-epochs", "1",
         "--batch-size", "4096", "--teacher-batch-size", "4096"]
CELL_PATH = Path("results/runs/toy/BPR-16_to_BPR-4/scratch/seed0.json")
SUMMARY_PATH = Path("results/tuning/toy/BPR-16_to_BPR-4/scratch.json")
STORAGE_PATH = Path("results/tuning/toy/BPR-16_to_BPR-4/scratch.db")


# -- helpers ---------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root (folders as None) with its bytes: equal snapshots, nothing written."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*")) if not p.is_symlink()}


def assert_one_line_exit_2(code: int, err: str, fragments: list[str]) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    if last.startswith("kdbench: error:"):
        assert err.count("kdbench: error:") == 1, err  # one error, on one line (progress notes may precede it)
    else:  # argparse: its usage line, then one error line
        assert last.startswith("python -m kdbench"), err
    for fragment in fragments:
        assert fragment in last, last


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def toy_data(root: Path) -> str:
    write_interactions(root / "data" / "toy.inter", n_users=20, n_items=15, per_user=8)
    return str(root / "data")


def toy_run(root: Path, *extra: str) -> list[str]:
    return ["run", "--dataset", "toy", "--data-path", toy_data(root), *SMALL, *extra]


def record(seed: int = 0, **change) -> dict:
    """A well-formed run record of the toy cell (BPR:16 -> BPR:4, scratch)."""
    return {
        "kdbench_run": 2, "status": "ok", "dataset": "toy", "teacher": "BPR:16", "student": "BPR:4",
        "pairing": "BPR:16->BPR:4", "model": "BPR:4", "strategy": "scratch", "label": "scratch",
        "variant": "defaults", "family": "baseline", "seed": seed, "config": {},
        "test": {"ndcg@10": 0.2, "ndcg@20": 0.3, "recall@10": 0.4, "recall@20": 0.5},
        "per_user": {"user_ids": [1, 2], "ndcg@10": [0.1, 0.3]}, "cost": {"params": 84},
        "training": {"seconds_per_epoch": 0.1, "epochs_run": 1, "best_epoch": 1, "hit_epoch_cap": True,
                     "valid_curve": [[1, 0.2]]},
        **change,
    }


def write(path: Path, content: bytes | str | dict | list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, (dict, list)):
        content = json.dumps(content)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def stored_runs(root: Path, damaged: bytes | str | dict | list) -> None:
    """results/ with one good run (seed 0) and one damaged file (seed 1)."""
    write(root / CELL_PATH, record(0))
    write(root / CELL_PATH.with_name("seed1.json"), damaged)


def suite_file(root: Path, **spec) -> str:
    base = {"name": "toy", "datasets": ["toy"], "seeds": [0], "strategies": ["scratch"],
            "train": {"max_epochs": 1, "batch_size": 4096}, "data_path": toy_data(root),
            "pairings": [{"teacher": "BPR:16", "student": "BPR:4"}]}
    base.update(spec)
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in base.items() if v is not ...}))
    return str(path)


def suite_run(root: Path, **spec) -> list[str]:
    return ["run", "--suite", suite_file(root, **spec)]


def bad_data(body: bytes | str, name: str = "toy.inter") -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        write(root / "bad" / name, body)
        return ["run", "--dataset", "toy", "--data-path", str(root / "bad"), *SMALL]
    return setup


def plugin(source: bytes | str) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        write(root / "plugin.py", source)
        return ["--plugin", str(root / "plugin.py"), "list"]
    return setup


ROWS = "".join(f"u{u}\ti{i}\t4\t{u * 10 + i}\n" for u in range(1, 6) for i in range(1, 6))

# id: (setup(workdir) -> argv, fragments the error line names)
CASES: dict[str, tuple[Callable[[Path], list[str]], list[str]]] = {
    # -- data files ---------------------------------------------------------------------------
    "data-binary": (bad_data(bytes(range(256)) * 4), ["malformed atomic file", "NUL byte", "binary"]),
    "data-latin-1": (bad_data(INTER_HEADER.encode() + "\nu1\tcaf\u00e9\t4\t1\n".encode("latin-1")),
                     ["line 2 is not UTF-8 text", "0xe9"]),
    "data-utf-16": (bad_data((INTER_HEADER + "\n" + ROWS).encode("utf-16")), ["byte-order mark"]),
    "data-utf-8-bom": (bad_data(b"\xef\xbb\xbf" + (INTER_HEADER + "\n" + ROWS).encode()), ["byte-order mark"]),
    "data-empty": (bad_data(b""), ["header column '' is not 'name:type'"]),
    "data-header-only": (bad_data(INTER_HEADER + "\n"), ["no interactions after the header"]),
    "data-no-item-column": (bad_data("user_id:token\trating:float\nu1\t3\n"), ["lacks a 'item_id' column"]),
    "data-duplicate-column": (bad_data("user_id:token\titem_id:token\tuser_id:token\nu1\ti1\tu2\n"),
                              ["names column 'user_id' twice"]),
    "data-crlf": (bad_data((INTER_HEADER + "\n" + ROWS).replace("\n", "\r\n")), ["Windows line endings"]),
    "data-too-few-fields": (bad_data(INTER_HEADER + "\n" + ROWS + "u9\ti9\n"), ["line 27 has 2 fields, header has 4"]),
    "data-prose": (bad_data("this is not a table\n"), ["header column 'this is not a table'"]),
    "data-inter-is-a-folder": (lambda root: (root / "bad" / "toy.inter").mkdir(parents=True) or
                               ["run", "--dataset", "toy", "--data-path", str(root / "bad"), *SMALL],
                               ["toy.inter' is not a regular file"]),
    # -- flags and paths ----------------------------------------------------------------------
    "results-dir-is-a-file": (lambda root: write(root / "taken", "x") and toy_run(root, "--results-dir", "taken"),
                              ["--results-dir 'taken' exists and is not a folder"]),
    "results-dir-under-a-file": (lambda root: write(root / "taken", "x") and toy_run(root, "--results-dir", "taken/sub"),
                                 ["'taken' is a file, not a folder"]),
    "cache-dir-is-a-file": (lambda root: write(root / "taken", "x") and toy_run(root, "--cache-dir", "taken"),
                            ["--cache-dir 'taken' exists and is not a folder"]),
    "data-path-is-a-file": (lambda root: write(root / "data.txt", "x") and
                            ["run", "--dataset", "toy", "--data-path", "data.txt", *SMALL],
                            ["data path 'data.txt' is a file, not a folder"]),
    "student-cannot-fit": (lambda root: toy_run(root, "--student", "BPR:99999999999"),
                           ["needs at least", "TiB of memory", "BPR:99999999999", "choose a smaller MODEL:DIM"]),
    "teacher-cannot-fit": (lambda root: toy_run(root, "--teacher", "BPR:999999999999"),
                           ["needs at least", "of memory", "BPR:999999999999"]),
    "ml-100k-student-cannot-fit": (lambda root: ["run", *SMALL, "--student", "BPR:99999999999"],
                                   ["ml-100k", "943 users and 1,682 items", "PiB of memory"]),
    "sweep-cannot-fit": (lambda root: ["sweep", "--dataset", "toy", "--data-path", toy_data(root),
                                       "--dims", "99999999999,4"], ["needs at least", "of memory"]),
    "teacher-epochs-zero": (lambda root: toy_run(root, "--teacher-epochs", "0"), ["--teacher-epochs", "must be >= 1"]),
    "teacher-lr-negative": (lambda root: toy_run(root, "--teacher-lr", "-0.1"), ["--teacher-lr", "must be > 0"]),
    "batch-size-zero": (lambda root: toy_run(root, "--batch-size", "0"), ["--batch-size", "must be >= 1"]),
    "workers-zero": (lambda root: toy_run(root, "--workers", "0"), ["--workers", "must be >= 1"]),
    "seed-not-a-number": (lambda root: toy_run(root, "--seed", "one"), ["--seed", "invalid int value"]),
    "student-dim-zero": (lambda root: toy_run(root, "--student", "BPR:0"), ["dimension must be a positive integer"]),
    "report-results-dir-is-a-file": (lambda root: write(root / "taken", "x") and ["report", "--results-dir", "taken"],
                                     ["--results-dir 'taken' exists and is not a folder"]),
    "tune-results-dir-is-a-file": (lambda root: write(root / "taken", "x") and
                                   ["tune", "--suite", suite_file(root), "--results-dir", "taken"],
                                   ["--results-dir 'taken' exists and is not a folder"]),
    "tune-trials-zero": (lambda root: ["tune", "--suite", suite_file(root), "--trials", "0"], ["--trials", "must be >= 1"]),
    "sweep-dims-zero": (lambda root: ["sweep", "--dims", "0,4"], ["--dims must be positive integers"]),
    "sweep-dims-not-numbers": (lambda root: ["sweep", "--dims", "big,small"], ["--dims must be comma-separated integers"]),
    "reproduce-missing-file": (lambda root: ["reproduce", "no-such-run.json"], ["run file 'no-such-run.json' does not exist"]),
    "reproduce-a-folder": (lambda root: (root / "runs").mkdir() or ["reproduce", "runs"], ["run file 'runs' is not a file"]),
    "reproduce-not-a-record": (lambda root: write(root / "run.json", [1, 2]) and ["reproduce", "run.json"],
                               ["damaged file run.json", "expected a JSON object, found list"]),
    "reproduce-record-without-settings": (lambda root: write(root / "run.json", record()) and ["reproduce", "run.json"],
                                          ["run file run.json lacks 'teacher_train'"]),
    "reproduce-unknown-strategy": (lambda root: write(root / "run.json", record(strategy="nosuch", label="nosuch", dataset="ml-100k",
                                   config={"train": {}, "teacher_train": {}})) and ["reproduce", "run.json"],
                                   ["unknown strategy 'nosuch'"]),
    "verify-missing-dir": (lambda root: ["verify", "--results-dir", "nowhere"], ["--results-dir 'nowhere' does not exist"]),
    "verify-dir-is-a-file": (lambda root: write(root / "taken", "x") and ["verify", "--results-dir", "taken"],
                             ["--results-dir 'taken' is not a folder"]),
    # -- suite files --------------------------------------------------------------------------
    "suite-binary": (lambda root: write(root / "s.yaml", b"\xff\xfe\x00bin") and ["run", "--suite", "s.yaml"],
                     ["suite file 's.yaml' is not UTF-8 text"]),
    "suite-is-a-folder": (lambda root: (root / "s.yaml").mkdir() or ["run", "--suite", "s.yaml"],
                          ["suite file 's.yaml' is not a file"]),
    "suite-pairing-without-student": (lambda root: suite_run(root, pairings=[{"teacher": "BPR:16"}]),
                                      ["each pairing must be a mapping with 'teacher' and either 'student'"]),
    "suite-pairing-is-text": (lambda root: suite_run(root, pairings=["BPR:16->BPR:4"]),
                              ["each pairing must be a mapping"]),
    "suite-seed-is-text": (lambda root: suite_run(root, seeds=[0, "one"]), ["each seed must be an integer, got 'one'"]),
    "suite-seeds-not-a-list": (lambda root: suite_run(root, seeds=3), ["needs a non-empty 'seeds' list, got 3"]),
    "suite-datasets-is-text": (lambda root: suite_run(root, datasets="toy"), ["needs a non-empty 'datasets' list"]),
    "suite-train-not-a-mapping": (lambda root: suite_run(root, train=5), ["'train' must be a mapping, got 5"]),
    "suite-learning-rate-is-text": (lambda root: suite_run(root, train={"learning_rate": "fast"}),
                                    ["training setting 'learning_rate'", "must be a number, got 'fast'"]),
    "suite-max-epochs-fraction": (lambda root: suite_run(root, train={"max_epochs": 2.5}),
                                  ["training setting 'max_epochs'", "must be an integer, got 2.5"]),
    "suite-teacher-seed-is-text": (lambda root: suite_run(root, teacher_seed="zero"), ["'teacher_seed' must be an integer"]),
    "suite-hparams-not-a-mapping": (lambda root: suite_run(root, hparams={"scratch": 5}),
                                    ["hparams of 'scratch' must be a mapping, got 5"]),
    "suite-strategies-a-number": (lambda root: suite_run(root, strategies=7),
                                  ["'strategies' must be 'all' or a list of names, got 7"]),
    "suite-quick-not-a-mapping": (lambda root: ["run", "--suite", suite_file(root, quick=[1]), "--quick"],
                                  ["'quick' must be a mapping, got [1]"]),
    "suite-tuning-not-a-mapping": (lambda root: ["tune", "--suite", suite_file(root, tuning=[12])],
                                   ["'tuning' block and its 'pruner' must be mappings"]),
    "suite-data-path-a-number": (lambda root: suite_run(root, data_path=3), ["'data_path' must be a folder path"]),
    # -- plugin files -------------------------------------------------------------------------
    "plugin-is-a-folder": (lambda root: (root / "plugin.py").mkdir() or ["--plugin", "plugin.py", "list"],
                           ["plugin file 'plugin.py' is not a file"]),
    "plugin-binary": (plugin(b"\x00\x01\x02\xff"), ["plugin.py' failed to import"]),
    "plugin-syntax-error": (plugin("def broken(:\n"), ["failed to import: SyntaxError"]),
    "plugin-raises": (plugin("raise RuntimeError('no GPU here')\n"), ["failed to import: RuntimeError: no GPU here"]),
    "plugin-exits": (plugin("import sys\nsys.exit(3)\n"), ["failed to import: SystemExit: 3"]),
    "plugin-unknown-family": (plugin("from kdbench.strategies import register_strategy, DistillationStrategy\n"
                                     "@register_strategy('mine', family='magic')\nclass Mine(DistillationStrategy):\n"
                                     "    pass\n"), ["unknown strategy family 'magic'"]),
    "plugin-takes-a-builtin-name": (plugin("from kdbench.strategies import register_strategy, DistillationStrategy\n"
                                           "@register_strategy('kd', family='response')\nclass Mine(DistillationStrategy):\n"
                                           "    pass\n"), ["strategy 'kd' is already registered"]),
    # -- stored results -----------------------------------------------------------------------
    "report-truncated-run": (lambda root: stored_runs(root, json.dumps(record(1))[:200]) or ["report"],
                             ["damaged file", "seed1.json", "not valid JSON", "truncated?"]),
    "report-run-is-a-list": (lambda root: stored_runs(root, [record(1)]) or ["report"], ["expected a JSON object, found list"]),
    "report-metric-is-text": (lambda root: stored_runs(root, record(1, test={"ndcg@10": "high"})) or ["report"],
                              ["'test.ndcg@10' is 'high', not a number"]),
    "report-status-missing": (lambda root: stored_runs(root, record(1, status=None)) or ["report"],
                              ["'status' is None, expected 'ok' or 'failed'"]),
    "report-empty-run": (lambda root: stored_runs(root, b"") or ["report"], ["seed1.json: empty"]),
    "report-binary-run": (lambda root: stored_runs(root, b"\x80\x81PK\x03\x04") or ["report"], ["not UTF-8 text"]),
    "report-run-is-a-folder": (lambda root: (root / "results/runs/toy/BPR-16_to_BPR-4/scratch/seed1.json").mkdir(
        parents=True) or write(root / CELL_PATH, record(0)) and ["report"], ["seed1.json: cannot be read"]),
    "report-run-seed-edited": (lambda root: stored_runs(root, record(7)) or ["report"],
                               ["its fields place it at", "seed7.json"]),
    "report-per-user-lengths": (lambda root: stored_runs(root, record(1, per_user={"user_ids": [1], "ndcg@10": [0.1, 0.2]}))
                                or ["report"], ["'per_user' lists have different lengths"]),
    "report-section-not-an-object": (lambda root: stored_runs(root, record(1, cost=[84])) or ["report"],
                                     ["'cost' is not an object"]),
    "report-meta-truncated": (lambda root: write(root / CELL_PATH, record(0)) and write(
        root / "results/leaderboard.meta.json", '{"command": "python -m kd') and ["report"],
        ["leaderboard.meta.json", "not valid JSON"]),
    "report-tuning-summary-truncated": (lambda root: write(root / CELL_PATH, record(0)) and write(
        root / SUMMARY_PATH, '{"dataset": ') and ["report"], ["scratch.json", "not valid JSON", "kdbench tune"]),
    "resume-truncated-run": (lambda root: write(root / CELL_PATH, json.dumps(record(0))[:100]) and toy_run(root),
                             ["damaged file results/runs/toy/BPR-16_to_BPR-4/scratch/seed0.json", "--force"]),
    "resume-suite-with-a-damaged-run": (lambda root: write(root / "results/runs/old/A_to_B/kd/seed0.json", "{")
                                        and suite_run(root), ["damaged file results/runs/old/A_to_B/kd/seed0.json"]),
    "resume-tuning-summary-hand-edited": (lambda root: write(root / SUMMARY_PATH, {"dataset": "toy"}) and suite_run(root),
                                          ["scratch.json: lacks 'best_trial'"]),
    "list-tuning-summary-truncated": (lambda root: write(root / SUMMARY_PATH, "{") and ["list"], ["scratch.json", "not valid JSON"]),
    "list-tuning-summary-hand-edited": (lambda root: write(root / SUMMARY_PATH, {"dataset": "toy", "pairing": 3}) and ["list"],
                                        ["scratch.json: lacks 'best_trial'"]),
    "tune-meta-truncated": (lambda root: write(root / "results/tuning/meta.json", '{"invoc') and
                            ["tune", "--suite", suite_file(root)], ["tuning/meta.json", "not valid JSON"]),
    "tune-storage-not-sqlite": (lambda root: write(root / STORAGE_PATH, b"garbage, not a database") and
                                ["tune", "--suite", suite_file(root)], ["scratch.db: not an SQLite database", "--force"]),
}


@pytest.mark.parametrize("setup, fragments", list(CASES.values()), ids=list(CASES))
def test_a_malformed_input_is_one_line_exit_2_and_writes_nothing(capsys, workdir, setup, fragments):
    args = setup(workdir)
    before = snapshot(workdir)
    code, _, err = run_cli(capsys, *args)
    assert_one_line_exit_2(code, err, fragments)
    assert snapshot(workdir) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_data_file_is_one_line_exit_2(capsys, workdir):
    args = bad_data(INTER_HEADER + "\n" + ROWS)(workdir)
    (workdir / "bad" / "toy.inter").chmod(0)
    code, _, err = run_cli(capsys, *args)
    assert_one_line_exit_2(code, err, ["cannot read atomic file", "Permission denied"])



# -- teacher cache entries: a damaged one heals ----------------------------------------------


class Payload:
    """Unpickling it would run code (create a file)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _rewrite_checksum(folder: Path) -> None:
    """Make meta.json vouch for whatever weights.pt now holds (a crafted, self-consistent entry)."""
    from kdbench.store.checkpoints import CHECKSUM, META, WEIGHTS, file_digest

    meta = json.loads((folder / META).read_text())
    (folder / META).write_text(json.dumps({**meta, CHECKSUM: file_digest(folder / WEIGHTS)}))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _code_payload(folder: Path) -> None:
    import torch

    torch.save({"user_embedding.weight": torch.zeros(2), "x": Payload(folder / "code-ran")}, folder / "weights.pt")
    _rewrite_checksum(folder)


def _replace(path: Path, content: bytes | None) -> None:
    path.unlink()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)


CACHE_DAMAGE: dict[str, Callable[[Path], None]] = {
    "weights-truncated": lambda folder: _truncate(folder / "weights.pt"),
    "weights-one-byte-changed": lambda folder: _flip_a_byte(folder / "weights.pt"),
    "weights-random-bytes": lambda folder: _replace(folder / "weights.pt", os.urandom(4096)),
    "weights-a-pickle-that-runs-code": _code_payload,
    "weights-is-a-folder": lambda folder: _replace(folder / "weights.pt", None),
    "weights-missing": lambda folder: (folder / "weights.pt").unlink(),
    "meta-truncated": lambda folder: _truncate(folder / "meta.json"),
    "meta-not-an-object": lambda folder: _replace(folder / "meta.json", b"[1, 2, 3]"),
}


@pytest.fixture(scope="module")
def cached_teacher(toy_dir, tmp_path_factory):
    """A toy teacher trained once into a cache: (teacher cell, cache folder, its entry's files)."""
    from kdbench.run.cells import Cell
    from kdbench.families import BackboneSpec
    from kdbench.run.runner import Runner
    from kdbench.training.loop import TrainSettings

    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "teacher", seed=0,
                train=TrainSettings(max_epochs=1, batch_size=4096), data_path=str(toy_dir))
    cache = tmp_path_factory.mktemp("cache")
    runner = Runner(tmp_path_factory.mktemp("results"), cache)
    runner.teachers([cell])
    (entry,) = (cache / "teachers").iterdir()
    return cell, cache, {p.name: p.read_bytes() for p in entry.iterdir()}


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE.values()), ids=list(CACHE_DAMAGE))
def test_a_damaged_teacher_cache_entry_is_moved_aside_and_retrained(tmp_path, cached_teacher, damage):
    import io
    import shutil

    import torch

    from kdbench.store.checkpoints import DAMAGED, load_checkpoint
    from kdbench.run.runner import Runner

    cell, original_cache, original_files = cached_teacher
    cache = tmp_path / "cache"
    shutil.copytree(original_cache, cache)
    (entry,) = (cache / "teachers").iterdir()
    damage(entry)
    notes: list[str] = []
    runner = Runner(tmp_path / "results", cache, log=notes.append)
    artifact = runner.teachers([cell])[entry.name]

    assert not isinstance(artifact, Exception)
    assert runner.teacher_sources[entry.name].startswith("trained now (the cache entry was damaged")
    assert any("is damaged" in note and "training the teacher again" in note for note in notes)
    assert [p.name for p in (cache / "teachers" / DAMAGED).iterdir()] == [f"{entry.name}.0"]  # kept aside
    healed, _ = load_checkpoint(entry)  # healed in place: the same teacher again
    original = torch.load(io.BytesIO(original_files["weights.pt"]), weights_only=True)
    assert healed.keys() == original.keys() and all(torch.equal(healed[k], original[k]) for k in original)
    assert not (entry / "code-ran").exists() and not list(tmp_path.rglob("code-ran"))


def test_with_strict_cache_a_damaged_entry_is_one_line_exit_2_and_left_in_place(capsys, workdir, toy_dir,
                                                                                cached_teacher):
    import shutil

    cell, original_cache, _ = cached_teacher
    shutil.copytree(original_cache, workdir / "cache")
    (entry,) = (workdir / "cache" / "teachers").iterdir()
    _truncate(entry / "weights.pt")
    before = snapshot(workdir)
    code, _, err = run_cli(capsys, "run", "--dataset", "toy", "--data-path", str(toy_dir), "--teacher", "BPR:8",
                           "--student", "BPR:4", "--epochs", "1", "--teacher-epochs", "1", "--batch-size", "4096",
                           "--teacher-batch-size", "4096", "--strict-cache")
    assert_one_line_exit_2(code, err, ["teacher cache entry", "is damaged", "without --strict-cache"])
    assert snapshot(workdir) == before
