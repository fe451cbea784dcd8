"""Shared fixtures: the bundled ml-100k split once per session, and small teacher/student pairs."""

from __future__ import annotations

import pytest
import torch

from kdbench.backbones import BackboneAdapter, BackboneSpec, build_model
from kdbench.data import load_data
from kdbench.strategies.base import DistillationContext


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory):
    return load_data("ml-100k", batch_size=512, work_dir=tmp_path_factory.mktemp("work"))


def make_context(data, teacher: str = "BPR:32", student: str = "BPR:8", seed: int = 0) -> DistillationContext:
    """A frozen, randomly initialised teacher and a fresh student on `data`."""
    torch.manual_seed(seed)
    teacher_model = build_model(BackboneSpec.parse(teacher), data).eval()
    for p in teacher_model.parameters():
        p.requires_grad_(False)
    student_model = build_model(BackboneSpec.parse(student), data)
    return DistillationContext(
        teacher=BackboneAdapter(teacher_model, data.uid_field, data.iid_field),
        student=BackboneAdapter(student_model, data.uid_field, data.iid_field),
        n_users=data.n_users,
        n_items=data.n_items,
        history=data.history,
        uid_field=data.uid_field,
        iid_field=data.iid_field,
        neg_iid_field=data.neg_iid_field,
        device=torch.device("cpu"),
        seed=seed,
    )


@pytest.fixture
def bpr_context(ml100k):
    return make_context(ml100k)


@pytest.fixture
def first_batch(ml100k):
    return next(iter(ml100k.train))
