"""Tuned teachers (suite option `tuning: {teacher: true}`, kdbench.tuning.teachers) on tiny data."""

from __future__ import annotations

import json
import optuna
import pytest
import yaml

from conftest import write_interactions
from kdbench.store.checkpoints import cache_key
from kdbench.cli import main
from kdbench.errors import KdbenchError
from kdbench.run.record import read_record, teacher_identity
from kdbench.run.suites import expand, load_suite
from kdbench.tuning.teachers import with_tuned_teachers
from kdbench.tuning import TuningSettings

SUITE = {
    "name": "toy",
    "datasets": ["toy"],
    "seeds": [0],
    "strategies": ["scratch"],
    "train": {"max_epochs": 2, "batch_size": 4096, "patience": 10},
    "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
    "tuning": {"trials": 2, "seeds": [100], "startup_trials": 1, "teacher": True,
               "pruner": {"startup_trials": 1, "warmup_epochs": 1}},
}
FOLDER = ("tuning", "toy", "BPR-8_to_BPR-4")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    write_interactions(root / "data" / "toy" / "toy.inter")
    (root / "suite.yaml").write_text(yaml.safe_dump({**SUITE, "data_path": str(root / "data")}))
    common = ["--suite", str(root / "suite.yaml"), "--results-dir", str(root / "results"),
              "--cache-dir", str(root / "cache"), "--workers", "1"]
    assert main(["tune", *common]) == 0
    assert main(["run", *common]) == 0
    return root


def test_the_option_defaults_to_fixed_teachers_and_leaves_study_identities_alone():
    plain, teacher = TuningSettings.from_spec({}), TuningSettings.from_spec({"teacher": True})
    assert plain.teacher is False and teacher.teacher is True
    assert plain.as_dict() == teacher.as_dict()  # never in a student study's identity
    with pytest.raises(KdbenchError, match="true or false"):
        TuningSettings.from_spec({"teacher": "yes"})


def test_each_pairing_teacher_has_its_own_study_with_the_suite_settings_as_trial_0(tuned):
    folder = tuned / "results" / FOLDER[0] / FOLDER[1] / FOLDER[2]
    summary = json.loads((folder / "teacher.json").read_text())
    assert summary["strategy"] == "teacher" and summary["pairing"] == "BPR:8->BPR:4"
    assert summary["finished"] and summary["trials_counted"] == 2
    assert set(summary["best_training"]) == {"learning_rate", "weight_decay"}
    assert summary["identity"]["teacher"] == "BPR:8" and summary["identity"]["tunes"] == "teacher"
    study = optuna.load_study(study_name="toy/BPR:8->BPR:4/teacher", storage=f"sqlite:///{folder / 'teacher.db'}")
    first = study.trials[0]
    suite_train = summary["identity"]["teacher_train"]
    assert first.user_attrs["defaults"] is True
    assert first.user_attrs["hparams"] == {"learning_rate": suite_train["learning_rate"],
                                           "weight_decay": suite_train["weight_decay"]}
    # the student study distilled from the tuned teacher: its identity holds the chosen values
    student = json.loads((folder / "scratch.json").read_text())
    for knob, value in summary["best_training"].items():
        assert student["identity"]["teacher_train"][knob] == value


def test_the_runs_use_the_tuned_teacher_and_only_then_a_new_teacher_key(tuned):
    suite = load_suite(str(tuned / "suite.yaml"))
    cells = expand(suite)
    summary = json.loads((tuned / "results" / FOLDER[0] / FOLDER[1] / FOLDER[2] / "teacher.json").read_text())
    tuned_cells = with_tuned_teachers(cells, tuned / "results")
    for cell in tuned_cells:
        for knob, value in summary["best_training"].items():
            assert getattr(cell.teacher_settings, knob) == value
    teacher_run = read_record(next((tuned / "results" / "runs").rglob("teacher/seed0.json")))
    assert teacher_run["config"]["teacher_train"]["learning_rate"] == summary["best_training"]["learning_rate"]
    fingerprint = teacher_run["data_fingerprint"]
    fixed_key = cache_key(teacher_identity(cells[0], fingerprint))
    tuned_key = cache_key(teacher_identity(tuned_cells[0], fingerprint))
    # a suite without the option keeps its teacher key; the tuned teacher's differs (unless the
    # defaults won, when the settings and so the key are the suite's own)
    same = all(getattr(cells[0].teacher_settings, k) == v for k, v in summary["best_training"].items())
    assert (fixed_key == tuned_key) == same


def test_runs_of_a_suite_that_tunes_its_teachers_need_the_studies_first(tmp_path):
    suite_path = tmp_path / "suite.yaml"
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    suite_path.write_text(yaml.safe_dump({**SUITE, "data_path": str(tmp_path / "data")}))
    with pytest.raises(KdbenchError, match="tune"):
        with_tuned_teachers(expand(load_suite(str(suite_path))), tmp_path / "results")


def test_the_leaderboard_states_the_teacher_settings_and_how_they_were_chosen(tuned):
    summary = json.loads((tuned / "results" / FOLDER[0] / FOLDER[1] / FOLDER[2] / "teacher.json").read_text())
    best = summary["best_training"]
    text = (tuned / "results" / "leaderboard.md").read_text()
    assert (f"Teacher BPR:8: learning rate {best['learning_rate']:.3g}, weight decay {best['weight_decay']:.3g}; "
            "tuned on validation NDCG@10 by its own study (`tuning/toy/BPR-8_to_BPR-4/teacher.json`).") in text
    header = json.loads((tuned / "results" / "leaderboard.json").read_text())["header"]
    assert header["teachers"] == [{"dataset": "toy", "pairing": "BPR:8->BPR:4", "teacher": "BPR:8",
                                   "learning_rate": pytest.approx(best["learning_rate"]),
                                   "weight_decay": pytest.approx(best["weight_decay"]), "chosen": "tuned",
                                   "study": "tuning/toy/BPR-8_to_BPR-4/teacher.json"}]


def test_tuning_trains_only_the_tuned_teacher(tmp_path):
    """The teacher's study and scratch's need no teacher; kd's distils from the tuned one, so the
    suite's untuned teacher is never trained (on a real catalogue it cost a teacher's training)."""
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    suite = {**SUITE, "strategies": ["scratch", "kd"], "data_path": str(tmp_path / "data")}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    common = ["--suite", str(tmp_path / "suite.yaml"), "--results-dir", str(tmp_path / "results"),
              "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]
    assert main(["tune", "--strategy", "scratch", *common]) == 0
    assert not list((tmp_path / "cache").rglob("meta.json"))  # the teacher's and scratch's studies alone
    assert main(["tune", *common]) == 0
    folder = tmp_path / "results" / FOLDER[0] / FOLDER[1] / FOLDER[2]
    best = json.loads((folder / "teacher.json").read_text())["best_training"]
    metas = [json.loads(path.read_text()) for path in (tmp_path / "cache").rglob("meta.json")]
    assert [{knob: meta["config"]["teacher_train"][knob] for knob in best} for meta in metas] == [best]
    assert json.loads((folder / "kd.json").read_text())["finished"]
