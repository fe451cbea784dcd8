"""Teachers from files: export-teacher writes the format, a damaged or mismatched file is one line
(exit 2, nothing written), a file's content is part of a cell's identity, and distilling from an
exported file gives the same run as distilling from the model it was exported from."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import run_cli
from kdbench.run.cells import Cell
from kdbench.families import BackboneSpec
from kdbench.run.record import identity
from kdbench.strategies import STRATEGIES
from kdbench.training.teacher_file import FORMAT, VERSION, parse_teacher, read_teacher_file

TOY_K = 8


@pytest.fixture(scope="module")
def toy_teacher(tmp_path_factory, toy_dir):
    """A teacher file exported from a 1-epoch BPR:8 teacher of the toy dataset (top-8 per user)."""
    root = tmp_path_factory.mktemp("export")
    folder = root / "teacher"
    from kdbench.cli import main  # a module fixture has no capsys: main itself

    code = main(["export-teacher", "--output", str(folder), "--dataset", "toy", "--data-path", str(toy_dir),
                 "--teacher", "BPR:8", "--k", str(TOY_K), "--teacher-epochs", "1", "--cache-dir", str(root / "cache")])
    assert code == 0
    return folder


def test_export_writes_the_documented_format(toy_teacher):
    header = json.loads((toy_teacher / "teacher.json").read_text())
    assert header["format"] == FORMAT and header["version"] == VERSION
    assert (header["dataset"], header["family"], header["K"], header["embeddings"]) == ("toy", "general", TOY_K, True)
    teacher = read_teacher_file(toy_teacher)
    assert teacher.items.shape == (header["rows"], TOY_K) == teacher.scores.shape
    assert teacher.item_embeddings.shape == (header["n_items"], 8)
    assert (teacher.scores[1:, :-1] >= teacher.scores[1:, 1:] - 1e-6).all()  # best first


def _damaged(source, target, edit):
    shutil.copytree(source, target)
    edit(target)
    return target


def _header(folder, **changes):
    header = json.loads((folder / "teacher.json").read_text())
    header.update(changes)
    (folder / "teacher.json").write_text(json.dumps(header))


def _array(folder, name, change):
    array = np.load(folder / name)
    np.save(folder / name, change(array))


def _rows_short(folder):
    for name in ("items.npy", "scores.npy"):
        _array(folder, name, lambda a: a[:-1])
    _header(folder, rows=json.loads((folder / "teacher.json").read_text())["rows"] - 1)


def _own_item(folder, toy_dir):
    from kdbench.families import load_data

    data = load_data("toy", str(toy_dir), work_dir=folder.parent / "work")
    _array(folder, "items.npy", lambda a: _with(a, (1, TOY_K - 1), int(data.history[1].indices[0])))


def _with(array, where, value):
    array = array.copy()
    array[where] = value
    return array


def _unsorted(a):
    a = a.copy()
    a[2] = a[2][::-1]
    a[2, 0] -= 1.0
    return a


DAMAGES = {
    "no header": (lambda f, d: (f / "teacher.json").unlink(), "no teacher.json"),
    "version": (lambda f, d: _header(f, version=2), "format version 2 is not supported"),
    "format": (lambda f, d: _header(f, format="other"), 'does not declare "format"'),
    "id out of range": (lambda f, d: _array(f, "items.npy", lambda a: _with(a, (3, 0), 10_000)), "ids outside"),
    "K inconsistent": (lambda f, d: _array(f, "scores.npy", lambda a: a[:, :-1]), "scores.npy has shape"),
    "repeated id": (lambda f, d: _array(f, "items.npy", lambda a: _with(a, (4, 1), a[4, 0])), "repeats an item"),
    "unsorted": (lambda f, d: _array(f, "scores.npy", _unsorted), "not sorted best first"),
    "pickled": (lambda f, d: np.save(f / "items.npy", np.array([{"x": 1}], dtype=object)), "not a plain .npy"),
    "rows": (lambda f, d: _rows_short(f), "this split has"),
    "fingerprint": (lambda f, d: _header(f, fingerprint="0123456789abcdef"), "made for another split"),
    "dataset": (lambda f, d: _header(f, dataset="ml-100k"), "made for dataset 'ml-100k'"),
    "split seed": (lambda f, d: _header(f, split_seed=1), "made with split_seed 1, this run's is 2020"),
    "own item": (lambda f, d: _own_item(f, d), "lists one of its own training items"),
    "embeddings": (lambda f, d: _array(f, "item_embeddings.npy", lambda a: a[:-2]), "item_embeddings.npy has shape"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_file_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, toy_dir, toy_teacher, damage):
    edit, fragment = DAMAGES[damage]
    folder = _damaged(toy_teacher, tmp_path / "damaged", lambda f: edit(f, toy_dir))
    results = tmp_path / "results"
    code, out, err = run_cli(capsys, "run", "--teacher", f"file:{folder}", "--student", "BPR:4", "--dataset", "toy",
                             "--data-path", str(toy_dir), "--strategy", "kd-topk", "--hp", f"K={TOY_K}",
                             "--epochs", "1", "--workers", "1", "--results-dir", str(results),
                             "--cache-dir", str(tmp_path / "cache"))
    assert code == 2, (out, err)
    assert err.startswith("kdbench: error: ") and err.count("\n") == 1 and fragment in err, err
    assert not list(results.rglob("*.json"))


@pytest.mark.parametrize("args, fragment", [
    (("--strategy", "kd"), "strategies that learn from a teacher file: "),
    (("--strategy", "rrd"), "holds K=8"),
    (("--strategy", "kd-topk", "--hp", "K=9"), "reads K=9 items"),
    (("--strategy", "teacher"), "has no teacher row"),
])
def test_a_strategy_the_file_cannot_teach_is_refused(capsys, tmp_path, toy_dir, toy_teacher, args, fragment):
    code, out, err = run_cli(capsys, "run", "--teacher", f"file:{toy_teacher}", "--student", "BPR:4", "--dataset",
                             "toy", "--data-path", str(toy_dir), *args, "--epochs", "1", "--workers", "1",
                             "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and fragment in err and err.count("\n") == 1, err
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))


def test_the_error_names_the_strategies_that_can_learn_from_files(capsys, tmp_path, toy_dir, toy_teacher):
    _, _, err = run_cli(capsys, "run", "--teacher", f"file:{toy_teacher}", "--student", "BPR:4", "--dataset", "toy",
                        "--data-path", str(toy_dir), "--strategy", "fitnet", "--results-dir", str(tmp_path / "r"))
    named = err.rsplit(": ", 1)[1].strip().split(", ")
    assert {"kd-topk", "rrd", "rrd-topk", "dllm2rec", "scratch"} <= set(named)
    assert "kd" not in named and "fitnet" not in named
    assert all(STRATEGIES.get(name).learns_from_files() for name in named)


def test_export_refuses_a_k_beyond_the_catalogue(capsys, tmp_path, toy_dir):
    code, _, err = run_cli(capsys, "export-teacher", "--output", str(tmp_path / "t"), "--dataset", "toy",
                           "--data-path", str(toy_dir), "--teacher", "BPR:8", "--k", "999", "--teacher-epochs", "1",
                           "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and "--k must be in [1, " in err and err.count("\n") == 1
    assert not (tmp_path / "t").exists()


def test_the_files_content_is_part_of_the_identity(tmp_path, toy_teacher):
    copy = shutil.copytree(toy_teacher, tmp_path / "copy")
    student = BackboneSpec.parse("BPR:4")
    before = identity(Cell("toy", parse_teacher(f"file:{copy}"), student, "kd-topk", 0), "cpu")
    _array(copy, "scores.npy", lambda a: a * 2)
    after = identity(Cell("toy", parse_teacher(f"file:{copy}"), student, "kd-topk", 0), "cpu")
    assert before["teacher_file"]["sha256"] != after["teacher_file"]["sha256"]
    assert {k: v for k, v in before.items() if k != "teacher_file"} == {k: v for k, v in after.items() if k != "teacher_file"}
    model = identity(Cell("toy", BackboneSpec.parse("BPR:8"), student, "kd-topk", 0), "cpu")
    assert "teacher_file" not in model and set(model) == set(before) - {"teacher_file"}


def _run(capsys, teacher: str, cache, results, *args: str) -> None:
    code, _, err = run_cli(capsys, "run", "--teacher", teacher, "--teacher-epochs", "2", "--student", "BPR:8",
                           "--epochs", "1", "--workers", "1", "--cache-dir", str(cache), "--results-dir",
                           str(results), *args)
    assert code == 0, err


def test_distilling_from_the_exported_file_equals_distilling_from_the_model(capsys, tmp_path):
    """The acceptance test of issue 29: kd (over the teacher's top-K: kd-topk, the kd a file can
    teach), rrd, dllm2rec (and rd) give the same run from the model and from its exported file."""
    cache, results = tmp_path / "cache", tmp_path / "results"
    code, _, err = run_cli(capsys, "export-teacher", "--output", str(tmp_path / "t"), "--teacher", "BPR:16",
                           "--k", "60", "--teacher-epochs", "2", "--cache-dir", str(cache))
    assert code == 0, err
    for teacher in (f"file:{tmp_path / 't'}", "BPR:16"):
        _run(capsys, teacher, cache, results, "--strategy", "kd-topk,dllm2rec,rd", "--hp", "K=10")
        _run(capsys, teacher, cache, results, "--strategy", "rrd", "--hp", "top_n=60")
    records = [json.loads(path.read_text()) for path in results.rglob("seed0.json")]
    from_file = {r["label"].replace("@K=10", ""): r for r in records if r["teacher"].startswith("file:")}
    from_model = {r["label"].replace("@K=10", ""): r for r in records if r["teacher"] == "BPR:16"}
    assert set(from_file) == set(from_model) == {"kd-topk", "dllm2rec", "rd", "rrd@top_n=60"}
    for label in from_file:
        assert from_file[label]["test"] == from_model[label]["test"], label
        assert from_file[label]["per_user"] == from_model[label]["per_user"], label
        assert from_file[label]["training"]["valid_curve"] == from_model[label]["training"]["valid_curve"], label
    # three different runs, not one run read three times
    assert len({json.dumps(run["test"], sort_keys=True) for run in from_file.values()}) == 4


def test_a_sequential_student_learns_the_same_from_the_file_as_from_the_model(capsys, tmp_path, toy_dir):
    """The same on queries (the paper's setting: a sequential student), on the toy dataset."""
    cache, results = tmp_path / "cache", tmp_path / "results"
    common = ("--dataset", "toy", "--data-path", str(toy_dir), "--cache-dir", str(cache))
    code, _, err = run_cli(capsys, "export-teacher", "--output", str(tmp_path / "t"), "--teacher", "SASRec:8",
                           "--k", str(TOY_K), "--teacher-epochs", "1", *common)
    assert code == 0, err
    header = json.loads((tmp_path / "t" / "teacher.json").read_text())
    assert header["family"] == "sequential" and header["rows"] > 50  # queries, not users
    for teacher in (f"file:{tmp_path / 't'}", "SASRec:8"):
        for strategy, hparams in (("dllm2rec", f"K={TOY_K}"), ("rrd-topk", "top_n=8,K=8,L=10")):
            code, _, err = run_cli(capsys, "run", "--teacher", teacher, "--teacher-epochs", "1", "--student",
                                   "GRU4Rec:8", "--strategy", strategy, *[a for h in hparams.split(",") for a in ("--hp", h)],
                                   "--epochs", "1", "--workers", "1", "--results-dir", str(results), *common)
            assert code == 0, err
    records = [json.loads(path.read_text()) for path in results.rglob("seed0.json")]
    from_file = {r["label"]: r for r in records if r["teacher"].startswith("file:")}
    from_model = {r["label"]: r for r in records if r["teacher"] == "SASRec:8"}
    assert len(from_file) == len(from_model) == 2 and set(from_file) == set(from_model)
    for label in from_file:
        assert from_file[label]["test"] == from_model[label]["test"], label
        assert from_file[label]["per_user"] == from_model[label]["per_user"], label
    # the runs are current; a changed file makes them stale (its hash is in their identity)
    from kdbench.commands.verify import verify

    assert verify(results).stale == []
    _array(tmp_path / "t", "scores.npy", lambda a: a - 1.0)
    stale = verify(results).stale
    assert len(stale) == 2 and all("teacher_file" in line for line in stale), stale


def test_the_adapter_gives_the_lists_and_refuses_unlisted_items(toy_teacher):
    import torch

    from kdbench.strategies.knowledge import scores_of_lists, teacher_top_n
    from kdbench.training.teacher_file import FileTeacherAdapter

    teacher = read_teacher_file(toy_teacher)
    adapter = FileTeacherAdapter(teacher, "user_id", "item_id")
    n_items = teacher.header["n_items"]
    import scipy.sparse as sp

    nothing = sp.csr_matrix((teacher.header["rows"], n_items), dtype="float32")
    top = teacher_top_n(adapter, nothing, 5)
    assert torch.equal(top[1:], teacher.items[1:, :5])
    assert torch.equal(scores_of_lists(adapter, top)[1:], teacher.scores[1:, :5])
    full = adapter.full_scores(torch.tensor([2]))[0]
    assert torch.isinf(full).sum() == n_items - TOY_K and torch.equal(full[teacher.items[2]], teacher.scores[2])
    unlisted = next(i for i in range(1, n_items) if i not in teacher.items[2].tolist())
    from kdbench.errors import KdbenchError

    with pytest.raises(KdbenchError, match="outside a row's top-8 list"):
        adapter.score(torch.tensor([2]), torch.tensor([[unlisted]]))
