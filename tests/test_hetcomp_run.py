"""HetComp end to end: an ensemble of BPR and LightGCN teachers, each trained once through the
teacher cache with its trajectory, distilled into a BPR student; the cell's identity names the
ensemble and the teachers' cache keys are those of plain teachers."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from kdbench.backbones import BackboneAdapter

from kdbench.run.cells import Cell
from kdbench.store.checkpoints import WEIGHTS
from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec
from kdbench.run.teachers import ensemble_cells
from kdbench.run.runner import Runner, validate_cells
from kdbench.training.loop import TrainSettings
from kdbench.training.trajectory import content_digest, file_name, from_bytes, snapshot, to_bytes
from kdbench.run.work import load_teacher, prepared_data

TEACHER = TrainSettings(max_epochs=6, batch_size=4096)
STUDENT = TrainSettings(max_epochs=2, batch_size=4096)
HPARAMS = (("K", 20), ("p", 1), ("teachers", "LightGCN:8"), ("warmup", 1))


def _cell(strategy: str = "hetcomp", hparams=HPARAMS, seed: int = 0, dataset: str = "ml-100k",
          data_path: str | None = None) -> Cell:
    return Cell(dataset, BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), strategy, seed=seed, hparams=hparams,
                train=STUDENT, teacher_train=TEACHER, data_path=data_path)


def test_hetcomp_runs_on_an_ensemble_of_teachers_with_trajectories(tmp_path):
    runner = Runner(tmp_path / "results", tmp_path / "cache")
    scratch = _cell("scratch", ())
    record = runner.run(_cell())
    assert record["status"] == "ok"
    assert record["config"]["hparams"]["teachers"] == "LightGCN:8"
    bpr_key = runner.teacher_key(scratch)  # the plain teacher's key: the trajectory is a file beside it
    lightgcn_key = runner.teacher_key(replace(scratch, teacher=BackboneSpec("LightGCN", 8)))
    assert [(m["teacher"], m["key"]) for m in record["ensemble"]] == [("BPR:8", bpr_key), ("LightGCN:8", lightgcn_key)]
    for member, key in zip(record["ensemble"], (bpr_key, lightgcn_key)):
        stored = (runner.cache.folder(key) / file_name()).read_bytes()
        assert member["trajectory"] == content_digest(from_bytes(stored))  # the lists the run learned from, by content
        trajectory = from_bytes(stored)
        assert trajectory["top"].shape[1:] == (944, 100) and trajectory["observed"].shape == (944, 10)
        assert trajectory["epochs"][-1] <= 6 and len(trajectory["epochs"]) == len(trajectory["top"])
        assert runner.teacher_sources[key] == "trained now"
        # the price of each teacher: its own training's wall time and threads, from its cached record
        cached_meta = runner.cache.cached(key)[1]
        assert member["wall_seconds"] == cached_meta["wall_seconds"] > 0
        assert member["threads"] == cached_meta["environment"]["threads"] and int(member["threads"]) >= 1
    again = Runner(tmp_path / "results", tmp_path / "cache")
    later = again.run(_cell(seed=1))
    assert later["status"] == "ok"
    # loaded from the cache, the teachers still cost their training, not their loading
    assert [m["wall_seconds"] for m in later["ensemble"]] == [m["wall_seconds"] for m in record["ensemble"]]
    assert sorted(again.teacher_sources) == sorted([bpr_key, lightgcn_key])
    assert all(source.startswith("loaded from the cache") for source in again.teacher_sources.values())


def test_a_cached_teacher_is_trained_again_for_its_trajectory_alone(tmp_path, toy_dir):
    runner = Runner(tmp_path / "results", tmp_path / "cache")
    scratch = _cell("scratch", (), dataset="toy", data_path=str(toy_dir))
    key = runner.teacher_key(scratch)
    runner.teachers([scratch])  # cached without a trajectory
    weights = (runner.cache.folder(key) / WEIGHTS).read_bytes()
    assert not (runner.cache.folder(key) / file_name()).exists()
    cell = _cell(dataset="toy", data_path=str(toy_dir))
    artifacts = runner.teachers([cell])
    assert runner.teacher_sources[key] == "trained again for its trajectory"
    assert (runner.cache.folder(key) / WEIGHTS).read_bytes() == weights  # the cached weights are kept
    ensemble = runner.ensemble(cell, artifacts)
    assert [artifact.key for artifact in ensemble][0] == key and all(a.trajectory for a in ensemble)
    # the lists are capped at the catalogue: all 40 toy items
    trajectory = from_bytes(ensemble[0].trajectory)
    assert trajectory["top"].shape[1:] == (51, 40)
    # trained again with the same seed: the recorded final list is the cached weights' own
    teacher = load_teacher(cell, ensemble[0], "cpu", str(tmp_path / "work"))
    data = prepared_data(cell, cell.teacher, cell.teacher_settings, "cpu", str(tmp_path / "work"))
    cached = snapshot(BackboneAdapter(teacher, data.uid_field, data.iid_field), data.history)
    assert torch.equal(cached["top"][0], trajectory["top"][-1])
    assert torch.equal(cached["observed"], trajectory["observed"])


def test_ensemble_is_checked_before_anything_trains():
    for teachers, message in (("LightGCN:8+Nope:8", "unknown model"), ("LightGCN:8+LightGCN:8", "named twice"),
                              ("SASRec:8", "family")):
        with pytest.raises(KdbenchError, match=message):
            validate_cells([_cell(hparams=(("teachers", teachers),))])
    validate_cells([_cell()])


def test_the_pairings_own_teacher_is_the_ensembles_first_member_once():
    named = _cell(hparams=(("teachers", "BPR:8+LightGCN:8"),))
    assert [str(member.teacher) for member in ensemble_cells(named)] == ["BPR:8", "LightGCN:8"]
    default = _cell(hparams=())
    assert [str(member.teacher) for member in ensemble_cells(default)] == ["BPR:8", "BPR:64", "LightGCN:64"]
    assert ensemble_cells(_cell("kd", ())) == [] and ensemble_cells(default.teacher_cell()) == []


def test_a_trajectory_digest_follows_the_lists_not_the_bytes():
    lists = {"epochs": torch.tensor([0, 5]), "top": torch.arange(24, dtype=torch.int32).view(2, 3, 4),
             "observed": torch.ones((3, 2), dtype=torch.int32)}
    def digest(trajectory):  # as stored and read back
        return content_digest(from_bytes(to_bytes(trajectory)))

    stored = digest(lists)
    assert digest({name: value.clone() for name, value in reversed(lists.items())}) == stored
    moved = dict(lists, top=lists["top"].flip(0))  # the same lists at other checkpoints
    assert digest(moved) != stored
    assert digest(dict(lists, observed=lists["observed"].long())) != stored  # dtype counts
