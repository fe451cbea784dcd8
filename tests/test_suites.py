"""Suites: the shipped default, expansion into cells, overrides, and mistakes in a suite file."""

from __future__ import annotations

import pytest
import yaml

from kdbench.errors import KdbenchError
from kdbench.run.runner import TEACHER
from kdbench.families import FAMILIES
from kdbench.strategies.base import method_names
from kdbench.run.suites import expand, load_suite


def test_the_default_suite_covers_every_strategy_two_pairings_and_five_seeds():
    cells = expand(load_suite(), sweeps=False)
    pairings = {c.pairing for c in cells}
    assert pairings == {"BPR:64->BPR:5", "LightGCN:64->LightGCN:8"}
    students = [c for c in cells if c.strategy != TEACHER]
    general = FAMILIES["general"]
    assert {c.strategy for c in students} == {n for n in method_names() if general.supports(n)} | {"de+rrd"}
    assert {c.seed for c in students} == {0, 1, 2, 3, 4}
    assert len(students) == 2 * 5 * (len([n for n in method_names() if general.supports(n)]) + 1)
    assert sum(c.strategy == TEACHER for c in cells) == 2


def test_the_default_suite_sweeps_student_sizes_for_scratch_and_three_strategies_on_three_seeds():
    main, cells = expand(load_suite(), sweeps=False), expand(load_suite())
    assert cells[:len(main)] == main  # the sweep adds cells and changes none
    added = [c for c in cells[len(main):] if c.strategy != TEACHER]
    assert {c.student.dim for c in added if c.teacher.model == "BPR"} == {2, 10, 20}
    assert {c.student.dim for c in added if c.teacher.model == "LightGCN"} == {2, 4, 16}
    assert {c.strategy for c in added} == {"scratch", "kd", "rrd", "rrd-topk"}
    assert {c.seed for c in added} == {0, 1, 2} and len(added) == 2 * 3 * 4 * 3
    lightgcn = next(c for c in main if c.pairing == "LightGCN:64->LightGCN:8" and c.strategy == "kd")
    swept = next(c for c in added if c.teacher.model == "LightGCN")
    assert swept.train == lightgcn.train and swept.teacher_settings == lightgcn.teacher_settings


def test_a_pairing_with_students_sweeps_sizes_with_its_own_strategies_and_seeds(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "datasets": ["ml-100k"], "seeds": [0, 1], "strategies": ["scratch", "kd", "rrd"],
        "pairings": [{"teacher": "BPR:16", "student": "BPR:4"},
                     {"teacher": "BPR:16", "students": ["BPR:2", "BPR:4", "BPR:8"], "strategies": ["scratch", "kd"],
                      "seeds": [0]}],
    }))
    cells = expand(load_suite(path))
    labels = [(c.pairing, c.label, c.seed) for c in cells]
    assert labels[:7] == [("BPR:16->BPR:4", "teacher", 0)] + [
        ("BPR:16->BPR:4", s, seed) for seed in (0, 1) for s in ("scratch", "kd", "rrd")]
    # BPR:4's sweep cells are the first pairing's: stored and run once, only its teacher row repeats nothing
    assert labels[7:] == [("BPR:16->BPR:2", "teacher", 0), ("BPR:16->BPR:2", "scratch", 0), ("BPR:16->BPR:2", "kd", 0),
                          ("BPR:16->BPR:8", "teacher", 0), ("BPR:16->BPR:8", "scratch", 0), ("BPR:16->BPR:8", "kd", 0)]
    assert len(set(cells)) == len(cells)
    assert [c.pairing for c in expand(load_suite(path), sweeps=False)] == ["BPR:16->BPR:4"] * 7
    narrowed = expand(load_suite(path), ["kd", "rrd"])  # `run --strategy kd,rrd`: the sweep keeps only kd
    assert {(c.pairing, c.label) for c in narrowed if c.pairing == "BPR:16->BPR:2"} == {
        ("BPR:16->BPR:2", "teacher"), ("BPR:16->BPR:2", "kd")}


def test_the_quick_suite_is_a_reduced_version_of_the_same_suite():
    full, quick = load_suite(), load_suite(quick=True)
    assert quick.label == "default-quick" and full.label == "default"
    cells = expand(quick)
    assert len(cells) < len(expand(full))
    assert {c.seed for c in cells if c.strategy != TEACHER} == {0}


def test_per_strategy_hyperparameters_become_part_of_the_cell_label(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "datasets": ["ml-100k"], "seeds": [0], "strategies": ["scratch", "rrd"],
        "pairings": [{"teacher": "BPR:16", "student": "BPR:4"}], "hparams": {"rrd": {"K": 20}},
    }))
    labels = [c.label for c in expand(load_suite(path))]
    assert labels == ["teacher", "scratch", "rrd@K=20"]


def test_pairing_training_settings_override_the_suite_ones(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "datasets": ["ml-100k"], "seeds": [0], "strategies": ["scratch"],
        "train": {"learning_rate": 0.001, "batch_size": 2048},
        "pairings": [{"teacher": "BPR:16", "student": "BPR:4", "train": {"learning_rate": 0.01}}],
    }))
    cell = expand(load_suite(path))[-1]
    assert cell.train.learning_rate == 0.01 and cell.train.batch_size == 2048
    assert cell.teacher_settings == cell.train


@pytest.mark.parametrize(
    "content, problem",
    [
        ({"datasets": ["ml-100k"], "seeds": [0], "pairings": [], "strategies": ["scratch"]}, "non-empty 'pairings'"),
        ({"datasets": ["ml-100k"], "seeds": [0], "strategies": ["nosuch"],
          "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}]}, "unknown strategy 'nosuch'"),
        ({"datasets": ["ml-100k"], "seeds": [0], "colour": "red",
          "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}]}, "unknown keys colour"),
        ({"datasets": ["ml-100k"], "seeds": [0], "train": {"speed": 3},
          "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}]}, "unknown training setting 'speed'"),
        ({"datasets": ["ml-100k"], "seeds": [0],
          "pairings": [{"teacher": "Nope:8", "student": "BPR:4"}]}, "unknown model 'Nope'"),
        ({"datasets": ["ml-100k"], "seeds": [0],
          "pairings": [{"teacher": "BPR:8", "student": "BPR:4", "students": ["BPR:2"]}]}, "either 'student'"),
        ({"datasets": ["ml-100k"], "seeds": [0],
          "pairings": [{"teacher": "BPR:8", "students": []}]}, "'students' of pairing BPR:8 must be a non-empty"),
        ({"datasets": ["ml-100k"], "seeds": [0],
          "pairings": [{"teacher": "BPR:8", "students": ["BPR:2"], "seeds": "zero"}]}, "non-empty 'seeds' list"),
        ({"datasets": ["ml-100k"], "seeds": [0],
          "pairings": [{"teacher": "BPR:8", "students": ["BPR:2"], "strategies": ["nosuch"]}]},
         "unknown strategy 'nosuch'"),
        ({"datasets": ["ml-100k"], "seeds": [0], "protocol": "shuffled",
          "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}]}, "unknown protocol 'shuffled': valid: leave-one-out, ordered"),
        ({"datasets": ["ml-100k"], "seeds": [0], "protocol": {"a": 1},
          "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}]}, "'protocol' must be a protocol name or a list"),
        ({"datasets": ["ml-100k"], "seeds": [0], "strategies": ["scratch"], "strategy_train": {"cd": {}},
          "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}]}, "'strategy_train' names 'cd', which the suite"),
        ({"datasets": ["ml-100k"], "seeds": [0], "train": {"init_std": 0},
          "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}]}, "init std must be > 0"),
    ],
    ids=["no-pairings", "unknown-strategy", "unknown-key", "unknown-setting", "unknown-model", "student-and-students",
         "empty-students", "bad-sweep-seeds", "bad-sweep-strategy",
         "unknown-protocol", "protocol-not-a-name", "strategy-train-not-run", "init-std"],
)
def test_a_mistake_in_a_suite_file_is_named(tmp_path, content, problem):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(KdbenchError, match=problem):
        expand(load_suite(path))


def test_a_suite_file_that_is_not_yaml_is_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("datasets: [ml-100k\n  - oops")
    with pytest.raises(KdbenchError, match="not valid YAML"):
        load_suite(path)


def test_a_suite_runs_every_cell_under_each_of_its_protocols_with_per_strategy_training(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "datasets": ["ml-100k"], "seeds": [0, 1], "strategies": ["scratch", "cd"],
        "train": {"weight_decay": 0.001, "init_std": 0.01}, "protocol": ["ordered-mask-train", "random"],
        "strategy_train": {"cd": {"weight_decay": 1.0e-8}},
        "pairings": [{"teacher": "BPR:16", "student": "BPR:4"}],
    }))
    cells = expand(load_suite(path))
    assert [(c.protocol, c.strategy, c.seed) for c in cells] == [
        (p, s, seed) for p in ("ordered-mask-train", "random")
        for s, seed in [(TEACHER, 0), ("scratch", 0), ("cd", 0), ("scratch", 1), ("cd", 1)]]
    assert {c.strategy: c.train.weight_decay for c in cells} == {TEACHER: 0.001, "scratch": 0.001, "cd": 1.0e-8}
    assert {c.train.init_std for c in cells} == {0.01}
    assert [c.protocol for c in expand(load_suite(path), protocols_override=["random"])] == ["random"] * 5


def test_the_datasets_suite_runs_each_strategy_with_the_default_suite_s_hyperparameters():
    """A strategy's row means the same settings on every dataset: the datasets suite's `hparams`
    (DE's and PCKD's 5 experts) are the default suite's, and so are its 5 seeds."""
    from kdbench.run.suites import bundled_suites

    default, datasets = (load_suite(bundled_suites()[name]).spec for name in ("default", "datasets"))
    assert datasets["hparams"] == default["hparams"] and default["hparams"]["pckd"] == {"num_experts": 5}
    assert datasets["strategies"] == default["strategies"]
    assert datasets["seeds"] == default["seeds"] == [0, 1, 2, 3, 4]


def test_dataset_narrows_a_suite_to_some_of_its_datasets_with_the_same_cells(tmp_path):
    """`--dataset` lets a grid finish one dataset before the next: the cells kept are the suite's
    own, identity and all; a dataset the suite does not list is named with the valid ones."""
    from kdbench.run.suites import bundled_suites

    suite = load_suite(bundled_suites()["datasets"])
    every = expand(suite, sweeps=False)
    only = expand(suite, sweeps=False, datasets_only=["citeulike-t"])
    assert {cell.dataset for cell in every} == {"citeulike-t", "amazon-beauty"}
    assert only == [cell for cell in every if cell.dataset == "citeulike-t"] and only
    with pytest.raises(KdbenchError, match="dataset 'ml-100k' is not in suite 'datasets': valid: amazon-beauty, citeulike-t"):
        expand(suite, datasets_only=["ml-100k"])


def test_run_and_tune_take_the_suite_dataset_flag(capsys):
    from conftest import run_cli
    from kdbench.run.suites import bundled_suites

    suite = str(bundled_suites()["datasets"])
    for command in ("run", "tune"):
        code, out, err = run_cli(capsys, command, "--suite", suite, "--dataset", "yelp")
        assert code == 2 and err.strip().splitlines() == [
            "kdbench: error: dataset 'yelp' is not in suite 'datasets': valid: amazon-beauty, citeulike-t"]
