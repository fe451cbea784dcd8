"""Teacher checkpoints: keyed by everything that determines the teacher, and unable to run code."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import kdbench.store.checkpoints as checkpoints
from kdbench.store.checkpoints import (CHECKSUM, META, WEIGHTS, DamagedCheckpoint, cache_key, file_digest, load_checkpoint,
                                 save_checkpoint)
from kdbench.families import BackboneSpec
from kdbench.run.runner import Cell, Runner
from kdbench.training.loop import TrainSettings

FIELDS = {
    "dataset": "ml-100k",
    "data_fingerprint": "ff86aeb4a1a20919",
    "model": "BPR:200",
    "model_config": {"embedding_size": 200},
    "seed": 0,
    "split_seed": 2020,
    "train": TrainSettings().as_dict(),
}


# -- cache keys ------------------------------------------------------------------------------


def test_the_same_fields_give_the_same_key():
    assert cache_key(dict(FIELDS)) == cache_key(json.loads(json.dumps(FIELDS)))


def test_the_key_does_not_depend_on_field_order():
    assert cache_key(dict(reversed(list(FIELDS.items())))) == cache_key(FIELDS)


def test_the_key_is_a_short_hex_digest():
    key = cache_key(FIELDS)
    assert len(key) == 20
    int(key, 16)


@pytest.mark.parametrize(
    "field, value",
    [
        ("dataset", "ml-1m"),
        ("data_fingerprint", "0000000000000000"),
        ("model", "BPR:100"),
        ("model_config", {"embedding_size": 100}),
        ("seed", 1),
        ("split_seed", 7),
        ("train", {**FIELDS["train"], "learning_rate": 0.01}),
        ("train", {**FIELDS["train"], "max_epochs": 299}),
    ],
)
def test_changing_any_field_changes_the_cache_key(field, value):
    assert cache_key({**FIELDS, field: value}) != cache_key(FIELDS)


def test_adding_a_field_changes_the_cache_key():
    assert cache_key({**FIELDS, "extra": None}) != cache_key(FIELDS)


def test_a_new_kdbench_version_changes_the_cache_key(monkeypatch):
    before = cache_key(FIELDS)
    monkeypatch.setattr(checkpoints, "__version__", "999.0")
    assert cache_key(FIELDS) != before


# -- the runner's teacher key ----------------------------------------------------------------

CELL = Cell("ml-100k", BackboneSpec("BPR", 16), BackboneSpec("BPR", 4), "scratch", seed=0,
            train=TrainSettings(max_epochs=2, batch_size=4096))
DATA = SimpleNamespace(fingerprint="ff86aeb4a1a20919")


def _teacher_key(cell=CELL, data=DATA) -> str:
    return Runner("unused-results", "unused-cache").teacher_key(cell, data)


def test_the_teacher_key_is_deterministic():
    assert _teacher_key() == _teacher_key(replace(CELL))


@pytest.mark.parametrize(
    "change",
    [
        {"teacher": BackboneSpec("BPR", 32)},
        {"teacher": BackboneSpec("LightGCN", 16)},
        {"teacher_seed": 1},
        {"split_seed": 7},
        {"dataset": "toy"},
        {"train": TrainSettings(max_epochs=2, batch_size=4096, learning_rate=0.01)},
        {"teacher_train": TrainSettings(max_epochs=3, batch_size=4096)},
    ],
    ids=["size", "model", "seed", "split-seed", "dataset", "hyperparameter", "teacher-settings"],
)
def test_changing_what_determines_the_teacher_changes_its_key(change):
    assert _teacher_key(replace(CELL, **change)) != _teacher_key()


def test_changing_the_data_changes_the_teacher_key():
    assert _teacher_key(data=SimpleNamespace(fingerprint="0123456789abcdef")) != _teacher_key()


@pytest.mark.parametrize(
    "change",
    [{"student": BackboneSpec("BPR", 8)}, {"strategy": "kd"}, {"seed": 3}, {"hparams": (("weight", 2.0),)}],
    ids=["student", "strategy", "student-seed", "strategy-hparams"],
)
def test_what_concerns_only_the_student_keeps_the_teacher_key(change):
    assert _teacher_key(replace(CELL, **change)) == _teacher_key()


# -- save / load -----------------------------------------------------------------------------


class Payload:
    """An arbitrary object: unpickling it would run code (here, touch a file)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _state():
    torch.manual_seed(0)
    return {"user_embedding.weight": torch.randn(5, 3), "item_embedding.weight": torch.randn(7, 3),
            "steps": torch.tensor(4, dtype=torch.int64)}


def test_a_checkpoint_round_trips_its_tensors_and_metadata(tmp_path):
    state, meta = _state(), {"test": {"ndcg@10": 0.25}, "model": "BPR:3", "curve": [[1, 0.1]]}
    save_checkpoint(tmp_path / "ckpt", state, meta)
    loaded_state, loaded_meta = load_checkpoint(tmp_path / "ckpt")
    assert loaded_state.keys() == state.keys()
    for name, tensor in state.items():
        assert torch.equal(loaded_state[name], tensor)
        assert loaded_state[name].dtype == tensor.dtype
    assert loaded_meta == meta


def test_the_weights_file_is_a_plain_state_dict_loadable_with_weights_only(tmp_path):
    save_checkpoint(tmp_path, _state(), {})
    weights = torch.load(tmp_path / WEIGHTS, weights_only=True)
    assert set(weights) == set(_state())
    assert json.loads((tmp_path / META).read_text()) == {CHECKSUM: file_digest(tmp_path / WEIGHTS)}


def test_non_tensor_entries_are_not_saved(tmp_path):
    save_checkpoint(tmp_path, {**_state(), "config": {"lr": 0.1}, "note": "x"}, {})
    state, _ = load_checkpoint(tmp_path)
    assert set(state) == set(_state())


def test_saving_leaves_no_temporary_files(tmp_path):
    save_checkpoint(tmp_path, _state(), {"a": 1})
    save_checkpoint(tmp_path, _state(), {"a": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([WEIGHTS, META])
    assert load_checkpoint(tmp_path)[1] == {"a": 2}


def test_a_missing_or_incomplete_checkpoint_loads_as_none(tmp_path):
    assert load_checkpoint(tmp_path / "absent") is None
    torch.save(_state(), tmp_path / WEIGHTS)  # weights without metadata: interrupted before completion
    assert load_checkpoint(tmp_path) is None


def test_a_checkpoint_holding_an_arbitrary_object_is_refused_and_runs_no_code(tmp_path):
    sentinel = tmp_path / "code-ran"
    torch.save({"weight": torch.zeros(2), "payload": Payload(sentinel)}, tmp_path / WEIGHTS)
    (tmp_path / META).write_text("{}")
    with pytest.raises(DamagedCheckpoint, match="does not load.*UnpicklingError"):
        load_checkpoint(tmp_path)
    assert not sentinel.exists()
