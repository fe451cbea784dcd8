"""A training run killed after a kept epoch and resumed by new objects ends exactly as one that ran
straight through (`kdbench.training.resume`), for every strategy that trains a general student, and
for SASRec students (scratch, KD)."""

from __future__ import annotations

import pytest
import torch

from kdbench.backbones import build_model
from kdbench.families import BackboneSpec, load_data
from kdbench.strategies import STRATEGIES
from kdbench.training.loop import TrainSettings, fit
from kdbench.training.resume import EpochCheckpoint

SETTINGS = TrainSettings(max_epochs=5, batch_size=4096, eval_every=2, patience=100)  # kept at epochs 2 and 4
STRATEGY_NAMES = sorted(name for name in STRATEGIES.names()
                        if STRATEGIES.get(name).trains and STRATEGIES.get(name).runs_on("general"))


class Killed(Exception):
    pass


@pytest.fixture
def data(ml100k_large_batches):
    return ml100k_large_batches


@pytest.fixture(scope="module")
def sequential_data(toy_dir, tmp_path_factory):
    """The toy catalogue (conftest's `toy_dir`: 50 users x 40 items, increasing timestamps) under
    leave-one-out."""
    from kdbench.families.sequential import LEAVE_ONE_OUT

    return load_data("toy", str(toy_dir), model="SASRec", batch_size=4096, protocol=LEAVE_ONE_OUT,
                     work_dir=tmp_path_factory.mktemp("work"))


def _run(name, data, checkpoint=None, kill_at=None, teacher_spec="BPR:32", student_spec="BPR:8", hparams=None):
    """(result, trained model, strategy) of `name` on a fresh teacher/student pair (seeded alike)."""
    from kdbench.families import family_of

    strategy_class = STRATEGIES.get(name)
    torch.manual_seed(0)
    teacher = build_model(BackboneSpec.parse(teacher_spec), data)
    if not strategy_class.updates_teacher:
        teacher = teacher.eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
    student = build_model(BackboneSpec.parse(student_spec), data)
    context = family_of(BackboneSpec.parse(student_spec)).context(data, student, teacher, seed=0)
    if strategy_class.needs_trajectories:  # HetComp: two teachers' recorded top lists
        from tests.strategies.test_hetcomp import _trajectory

        context.trajectories = (_trajectory(data.n_users, data.n_items, 4, seed=1),
                                _trajectory(data.n_users, data.n_items, 2, seed=2))
    strategy = strategy_class(context, **(hparams or {}))
    strategy.prepare()
    student = strategy.model_to_train(student)

    def on_epoch(epoch, valid):
        if epoch == kill_at:
            raise Killed

    result = fit(student, data, SETTINGS, strategy=strategy, seed=0, on_epoch=on_epoch, checkpoint=checkpoint)
    return result, student, strategy


def _killed_and_resumed_equals_straight(name, data, tmp_path, **specs):
    straight, model, strategy = _run(name, data, **specs)
    path = tmp_path / "run.pt"
    with pytest.raises(Killed):  # killed during epoch 3: epoch 2's state is kept
        _run(name, data, EpochCheckpoint(path, "cell"), kill_at=3, **specs)
    checkpoint = EpochCheckpoint(path, "cell")
    assert path.is_file() and checkpoint.load()["loop"]["epoch"] == 2
    resumed, resumed_model, resumed_strategy = _run(name, data, checkpoint, **specs)
    assert checkpoint.disabled is None
    assert resumed.valid_curve == straight.valid_curve and resumed.best_epoch == straight.best_epoch
    assert resumed.epochs_run == straight.epochs_run == 5
    for key, value in model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    for key, value in strategy.state_dict().items():
        assert torch.equal(value, resumed_strategy.state_dict()[key]), key
    assert not path.exists()  # removed once the run ended


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_a_run_killed_after_a_kept_epoch_resumes_to_the_same_end(name, data, tmp_path):
    _killed_and_resumed_equals_straight(name, data, tmp_path)


@pytest.mark.parametrize("name, hparams", [("scratch", {}), ("kd", {"K": 5})])
def test_a_sequential_run_killed_after_a_kept_epoch_resumes_to_the_same_end(name, hparams, sequential_data, tmp_path):
    """SASRec's dropout draws from torch's generator: kept and put back like the rest."""
    _killed_and_resumed_equals_straight(name, sequential_data, tmp_path, teacher_spec="SASRec:16:L1H1",
                                        student_spec="SASRec:8:L1H1", hparams=hparams)


def test_another_runs_file_is_ignored_and_a_damaged_one_removed(data, tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(Killed):
        _run("scratch", data, EpochCheckpoint(path, "cell-a"), kill_at=3)
    assert EpochCheckpoint(path, "cell-b").load() is None and not path.exists()
    path.write_bytes(b"not a checkpoint")
    assert EpochCheckpoint(path, "cell-a").load() is None and not path.exists()
    straight, _, _ = _run("scratch", data)
    fresh, _, _ = _run("scratch", data, EpochCheckpoint(path, "cell-a"))  # nothing kept: from epoch 1
    assert fresh.valid_curve == straight.valid_curve


def test_a_strategy_attribute_a_checkpoint_cannot_hold_leaves_the_run_without_one(data, tmp_path):
    from kdbench.training.resume import _strategy_state, Unresumable

    class Holder(torch.nn.Module):
        pass

    holder = Holder()
    holder.cursor = 3
    holder.samples = torch.arange(4)
    holder.generator = torch.Generator().manual_seed(1)
    state = _strategy_state(holder, {})
    assert state["attributes"] == {"cursor": 3, "samples": state["attributes"]["samples"]}
    assert set(state["generators"]) == {"generator"}
    holder.lookup = object()
    with pytest.raises(Unresumable, match="lookup"):
        _strategy_state(holder, {})
    assert "lookup" not in _strategy_state(holder, {"lookup": id(holder.lookup)})["attributes"]  # prepare's own


def test_a_cells_checkpoint_is_named_by_what_determines_its_run(tmp_path):
    from dataclasses import replace
    from types import SimpleNamespace

    from kdbench.run.cells import Cell
    from kdbench.run.work import RESUME_FOLDER, CellTask, cell_checkpoint

    cell = Cell("ml-100k", BackboneSpec("BPR", 16), BackboneSpec("BPR", 4), "kd", seed=0)
    data = SimpleNamespace(fingerprint="abc")
    first = cell_checkpoint(CellTask(cell, work_dir=str(tmp_path)), data)
    assert first.path.parent == tmp_path / RESUME_FOLDER
    assert cell_checkpoint(CellTask(cell, work_dir=str(tmp_path)), data).path == first.path
    others = [replace(cell, seed=1), replace(cell, hparams=(("weight", 0.5),)), replace(cell, strategy="rrd")]
    paths = {cell_checkpoint(CellTask(other, work_dir=str(tmp_path)), data).path for other in others}
    paths.add(cell_checkpoint(CellTask(cell, work_dir=str(tmp_path)), SimpleNamespace(fingerprint="other")).path)
    assert first.path not in paths and len(paths) == 4
