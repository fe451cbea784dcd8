"""Trials share a frozen teacher's prepared knowledge (kdbench.strategies.shared_knowledge): the second trial of
a study gets the teacher's top-N lists without computing them, identical to computing them."""

from __future__ import annotations

import pytest
import torch

import kdbench.strategies.shared_knowledge as shared
import kdbench.strategies.knowledge as knowledge
from conftest import make_context
from kdbench.backbones import build_model
from kdbench.families import BackboneSpec
from kdbench.strategies.base import DistillationContext
from kdbench.strategies.dcd import DCD
from kdbench.strategies.rrd import RRD


@pytest.fixture(autouse=True)
def fresh():
    shared.clear()
    yield
    shared.clear()


@pytest.fixture
def scored(monkeypatch):
    """How many score blocks `knowledge.score_blocks` yields (the work of a full-catalogue pass)."""
    count = {"blocks": 0}
    original = knowledge.score_blocks

    def counting(*args, **kwargs):
        for block in original(*args, **kwargs):
            count["blocks"] += 1
            yield block

    monkeypatch.setattr(knowledge, "score_blocks", counting)
    return count


def trial_context(data, teacher_model, seed):
    """A trial's context: the process's one frozen teacher, a fresh student of its own seed."""
    torch.manual_seed(seed)
    student = build_model(BackboneSpec.parse("BPR:8"), data)
    return DistillationContext.build(data, student, teacher_model, seed=seed)


def test_a_second_trial_reuses_the_teachers_top_n_and_gets_identical_lists(ml100k, scored):
    teacher = make_context(ml100k).teacher.model
    expected = knowledge.teacher_top_n(make_context(ml100k).teacher, ml100k.history, 200)  # not registered
    assert scored["blocks"] > 0 and shared.COMPUTED["teacher_top_n"] == 0  # unregistered: not kept
    shared.share_teacher(teacher, "artifact@cpu")
    first = RRD(trial_context(ml100k, teacher, 1), weight=0.01, T=5.0, top_n=200)
    first.prepare()
    blocks = scored["blocks"]
    second = RRD(trial_context(ml100k, teacher, 2), weight=0.1, T=20.0, top_n=200)  # other trial parameters
    second.prepare()
    assert scored["blocks"] == blocks and shared.COMPUTED["teacher_top_n"] == 1  # not recomputed
    assert torch.equal(first._pool, expected) and torch.equal(second._pool, expected)
    second._pool[:] = 0  # a trial's copy is its own
    third = RRD(trial_context(ml100k, teacher, 3), top_n=200)
    third.prepare()
    assert torch.equal(third._pool, expected)
    RRD(trial_context(ml100k, teacher, 4), top_n=100).prepare()  # another list size: its own entry
    assert shared.COMPUTED["teacher_top_n"] == 2 and scored["blocks"] > blocks


def test_the_item_side_lists_are_shared_and_the_students_ranks_never_are(ml100k):
    teacher = make_context(ml100k).teacher.model
    shared.share_teacher(teacher, "artifact@cpu")
    runs = []
    for seed, weight in ((1, 0.01), (2, 0.05)):
        dcd = DCD(trial_context(ml100k, teacher, seed), weight=weight, item_weight=0.5, top_n=50, K=10)
        dcd.prepare()
        runs.append(dcd)
    assert shared.COMPUTED == {"teacher_top_n": 1, "top_users": 1}
    assert torch.equal(runs[0].item_pool, runs[1].item_pool) and torch.equal(runs[0].user_pool, runs[1].user_pool)
    fresh = knowledge.top_users(make_context(ml100k).teacher, ml100k.history, 50)  # another model: computed
    assert torch.equal(fresh, runs[0].user_pool) and shared.COMPUTED["top_users"] == 1


def test_a_teacher_is_forgotten_with_its_model_and_the_kept_bytes_are_bounded(ml100k, monkeypatch):
    import gc

    context = make_context(ml100k)
    shared.share_teacher(context.teacher.model, "a@cpu")
    knowledge.teacher_top_n(context.teacher, ml100k.history, 20)
    assert len(shared._TEACHERS) == 1 and len(shared._KEPT) == 1
    del context
    gc.collect()
    assert len(shared._TEACHERS) == 0  # nothing keeps a teacher alive
    context = make_context(ml100k)
    shared.share_teacher(context.teacher.model, "a@cpu")
    monkeypatch.setattr(shared, "MAX_BYTES", ml100k.history.shape[0] * 30 * 8)  # one list of 30, not two
    knowledge.teacher_top_n(context.teacher, ml100k.history, 30)
    knowledge.teacher_top_n(context.teacher, ml100k.history, 29)
    assert [key[-2] for key in shared._KEPT] == [(29,)]


def test_load_teacher_registers_the_frozen_teacher_it_caches(ml100k, tmp_path):
    from kdbench.run.cells import Cell
    from kdbench.run.work import TeacherArtifact, load_teacher

    model = make_context(ml100k).teacher.model
    artifact = TeacherArtifact.from_state("teacher-key", model.state_dict(), {"test": {}})
    cell = Cell("ml-100k", BackboneSpec.parse("BPR:32"), BackboneSpec.parse("BPR:8"), "rrd", 0)
    frozen = load_teacher(cell, artifact, "cpu", str(tmp_path))
    assert shared._TEACHERS.get(frozen).startswith("teacher-key@cpu:")
    trainable = load_teacher(cell, artifact, "cpu", str(tmp_path), trainable=True)
    assert shared._TEACHERS.get(trainable) is None  # a teacher trained further shares nothing
