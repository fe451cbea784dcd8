"""A teacher cell killed mid-training continues at its last kept epoch (`training.resume`), its recorded
trajectory included, and ends with the straight run's weights, lists and metrics; a teacher keeps its
epoch at most once a minute (its state is tens of times a student's)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

import kdbench.run.work as work_module
from conftest import write_interactions
from kdbench.run.suites import expand, load_suite
from kdbench.run.work import CellTask, run_task
from kdbench.training.loop import TrainSettings, fit
from kdbench.training.resume import EpochCheckpoint
from kdbench.training.trajectory import TrajectoryRecorder, content_digest, from_bytes

SUITE = {
    "name": "toy",
    "datasets": ["toy"],
    "seeds": [0],
    "strategies": ["scratch"],
    "train": {"max_epochs": 3, "batch_size": 4096},
    "teacher_train": {"max_epochs": 12, "batch_size": 64, "patience": 100},  # best at epoch 12
    "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
}


class Killed(BaseException):
    """The worker's end (a signal)."""


@pytest.fixture
def teacher_task(tmp_path) -> CellTask:
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({**SUITE, "data_path": str(tmp_path / "data")}))
    cell = expand(load_suite(tmp_path / "suite.yaml"))[0].teacher_cell()
    return CellTask(cell, "cpu", str(tmp_path / "cache"), teacher_key="toy-teacher", trajectory=True)


def _trained(task: CellTask, monkeypatch, kill_at: int | None = None) -> tuple:
    """(weights, trajectory digest, test metrics, epochs trained here) of the teacher cell."""
    trained = []

    def watched_fit(*args, on_epoch, **kwargs):
        def counted(epoch, valid):
            trained.append(epoch)
            on_epoch(epoch, valid)
            if epoch == kill_at:
                raise Killed  # after the epoch's hooks, before it is kept: the last kept is the one before
        return fit(*args, on_epoch=counted, **kwargs)

    monkeypatch.setattr(work_module, "fit", watched_fit)
    outcome = run_task(task)
    weights = torch.load(io.BytesIO(outcome.teacher.weights), weights_only=True)
    trajectory = from_bytes(outcome.teacher.trajectory)
    return weights, (content_digest(trajectory), trajectory["epochs"].tolist()), outcome.record["test"], len(trained)


@pytest.mark.slow
def test_a_killed_teacher_continues_with_its_trajectory_and_ends_as_the_straight_one(teacher_task, monkeypatch):
    monkeypatch.setattr(work_module, "TEACHER_CHECKPOINT_SECONDS", 0.0)  # every epoch kept, to kill between
    weights, trajectory, test, epochs = _trained(teacher_task, monkeypatch)
    assert epochs == 12 and not list(Path(teacher_task.work_dir).glob("resume/*.pt"))  # removed at the end
    assert trajectory[1] == [5, 10, 12]  # the lists of epochs 5 and 10, then the best weights' (epoch 12)
    with pytest.raises(Killed):
        _trained(teacher_task, monkeypatch, kill_at=8)  # lists recorded at epoch 5 are in the kept state
    resumed_weights, resumed_trajectory, resumed_test, resumed_epochs = _trained(teacher_task, monkeypatch)
    assert resumed_epochs == 5  # epochs 8-12: epoch 7 was kept
    assert resumed_trajectory == trajectory and resumed_test == test
    assert weights.keys() == resumed_weights.keys()
    assert all(torch.equal(weights[key], resumed_weights[key]) for key in weights)


def test_a_teacher_s_checkpoint_is_its_own_and_kept_at_most_once_a_minute(teacher_task, monkeypatch):
    kept = []

    def watched_fit(*args, checkpoint, **kwargs):
        kept.append(checkpoint)
        raise Killed

    monkeypatch.setattr(work_module, "fit", watched_fit)
    with pytest.raises(Killed):
        run_task(teacher_task)
    with pytest.raises(Killed):
        run_task(replace(teacher_task, trajectory=False))
    recording, plain = kept
    assert recording.every_seconds == work_module.TEACHER_CHECKPOINT_SECONDS == 60.0
    assert isinstance(recording.companions["trajectory"], TrajectoryRecorder) and plain.companions == {}
    assert recording.path != plain.path and recording.path.parent.name == "resume"  # a recording run's own file


def test_a_checkpoint_writes_at_most_once_in_its_interval(toy, tmp_path):
    from kdbench.backbones import build_model
    from kdbench.families import BackboneSpec

    path = tmp_path / "run.pt"
    epochs = []

    def kill_at_six(epoch, valid):
        if epoch == 6:
            epochs.append(EpochCheckpoint(path, "run").load()["loop"]["epoch"])
            raise Killed

    torch.manual_seed(0)
    model = build_model(BackboneSpec.parse("BPR:4"), toy)
    with pytest.raises(Killed):
        fit(model, toy, TrainSettings(max_epochs=10, batch_size=4096), seed=0, on_epoch=kill_at_six,
            checkpoint=EpochCheckpoint(path, "run", every_seconds=3600))
    assert epochs == [1]  # the first validated epoch only: the next ones fell within the hour


def test_a_peeked_checkpoint_is_read_once_for_the_run_that_loads_it(tmp_path, monkeypatch):
    import kdbench.training.resume as resume_module

    path = tmp_path / "run.pt"
    torch.save({"key": "run", "loop": {"epoch": 2}}, path)
    reads = []
    load = torch.load
    monkeypatch.setattr(resume_module.torch, "load", lambda *a, **k: reads.append(1) or load(*a, **k))
    checkpoint = EpochCheckpoint(path, "run")
    peeked = checkpoint.peek()
    assert checkpoint.load() is peeked and len(reads) == 1  # the run's own load takes the peeked state
    assert checkpoint.load() == peeked and len(reads) == 2  # handed over once: a later load reads again
