"""Shared fixtures: the bundled ml-100k split once per session, and small teacher/student pairs."""

from __future__ import annotations

import pytest
import torch

from kdbench.backbones import build_model
from kdbench.families import BackboneSpec, load_data
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
    return DistillationContext.build(data, student_model, teacher_model, seed=seed)


@pytest.fixture
def bpr_context(ml100k):
    return make_context(ml100k)


@pytest.fixture
def first_batch(ml100k):
    return next(iter(ml100k.train))


INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def write_interactions(path, n_users: int = 50, n_items: int = 40, per_user: int = 20, seed: int = 0):
    """A synthetic RecBole atomic `.inter` file: every user rates `per_user` distinct items."""
    import random
    from pathlib import Path

    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [INTER_HEADER]
    clock = 0
    for user in range(1, n_users + 1):
        for item in rng.sample(range(1, n_items + 1), per_user):
            clock += 1
            lines.append(f"u{user}\ti{item}\t{rng.randint(1, 5)}\t{clock}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def ml100k_large_batches(tmp_path_factory):
    """The same ml-100k split with 4096-interaction training batches (20 per epoch): for tests that train."""
    return load_data("ml-100k", batch_size=4096, work_dir=tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory):
    """A folder holding `toy/toy.inter` (50 users x 40 items, 20 interactions each): use with data_path."""
    root = tmp_path_factory.mktemp("atomic")
    write_interactions(root / "toy" / "toy.inter")
    return root


@pytest.fixture(scope="session")
def toy(toy_dir, tmp_path_factory):
    """The synthetic dataset, split once per session; a whole epoch is one batch."""
    return load_data("toy", str(toy_dir), batch_size=4096, work_dir=tmp_path_factory.mktemp("work"))


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m kdbench ARGS`, in this process."""
    try:
        from kdbench.cli import main

        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
