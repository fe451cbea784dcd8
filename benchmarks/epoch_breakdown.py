"""Where a training epoch goes, strategy by strategy, as a Markdown table (for the README).

    python -m benchmarks.epoch_breakdown [SHAPE] [STRATEGY,...] [RUNS]   # citeulike-t-shape, all, 3

The epoch of benchmarks/test_training_epoch.py (the RCE-KD reproduction's pairing and settings on
a synthetic catalogue of a real dataset's shape), one intra-op thread, timed in parts: prepare()
(once per run), on_epoch_start() (resampling; of it, the frozen teacher's scoring), and per batch
the loader, the student's base loss, the KD loss forward, the backward pass and the optimiser
step. Each strategy's epoch runs RUNS times after a warm-up epoch, alternating with scratch's;
each part is the fastest of its RUNS (load on a shared machine only ever adds time), the epoch
their sum, and `x scratch` divides it by scratch's epoch taken the same way in the same
alternation.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from benchmarks._support import EPOCH, EPOCH_SHAPES, BenchSession, TrainingEpoch, trained_general_strategies
from kdbench.strategies import knowledge
from kdbench.training.loop import _base_loss

PARTS = ("start", "teacher", "loader", "base", "kd", "backward", "step")


def timed_epoch(epoch: TrainingEpoch) -> Counter:
    """One epoch of `epoch`'s strategy, timed in PARTS (teacher: inside the teacher's adapter)."""
    parts: Counter = Counter()
    strategy, student = epoch.strategy, epoch.student
    teacher = strategy.context.teacher
    originals = {}
    if teacher is not None:  # time every call into the teacher's adapter
        for name in ("score", "full_scores", "representation_tables"):
            originals[name] = getattr(teacher, name)

            def wrapped(*args, _call=originals[name], **kwargs):
                tic = time.perf_counter()
                try:
                    return _call(*args, **kwargs)
                finally:
                    parts["teacher"] += time.perf_counter() - tic
            setattr(teacher, name, wrapped)
    if teacher is not None and hasattr(knowledge, "list_scores"):  # and its list scores (scores_of_lists)
        originals["list_scores"] = knowledge.list_scores

        def teacher_lists(adapter, *args, _call=originals["list_scores"], **kwargs):
            tic = time.perf_counter()
            try:
                return _call(adapter, *args, **kwargs)
            finally:
                if adapter is teacher:
                    parts["teacher"] += time.perf_counter() - tic
        knowledge.list_scores = teacher_lists
    try:
        student.model.train()
        tic = time.perf_counter()
        strategy.on_epoch_start(EPOCH)
        parts["start"] += time.perf_counter() - tic
        batches = iter(epoch.data.train)
        while True:
            tic = time.perf_counter()
            batch = next(batches, None)
            parts["loader"] += time.perf_counter() - tic
            if batch is None:
                break
            tic = time.perf_counter()
            with student.one_forward_per_step():
                loss = _base_loss(student.model, batch)
                parts["base"] += time.perf_counter() - tic
                tic = time.perf_counter()
                kd = strategy.loss(batch)
                if kd is not None:
                    loss = loss + strategy.weight * kd
                parts["kd"] += time.perf_counter() - tic
            tic = time.perf_counter()
            epoch.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parts["backward"] += time.perf_counter() - tic
            tic = time.perf_counter()
            epoch.optimizer.step()
            parts["step"] += time.perf_counter() - tic
    finally:
        for name in originals:
            if name == "list_scores":
                knowledge.list_scores = originals[name]
            else:
                delattr(teacher, name)
    return parts


def main(shape: str = "citeulike-t-shape", names: list[str] | None = None, runs: int = 3) -> None:
    torch.set_num_threads(1)
    names = names or trained_general_strategies()
    bench = BenchSession(Path(tempfile.mkdtemp(prefix="kdbench-breakdown-")))
    scratch = bench.training_epoch(shape, "scratch")
    timed_epoch(scratch)
    print(f"Epoch on {shape} {EPOCH_SHAPES.get(shape)}, seconds (one thread; each part the fastest of {runs}):\n")
    print("| strategy | prepare (once) | epoch start | of it teacher | loader | base loss | KD loss | backward "
          "| optimiser | epoch | x scratch |")
    print("| --- |" + " ---: |" * 10)
    for name in names:
        epoch = bench.training_epoch(shape, name)
        timed_epoch(epoch)  # warm-up: the optimiser's state, the allocator
        mine, theirs = [], []
        for _ in range(runs):  # in alternation with scratch's epoch: both see the same load
            mine.append(timed_epoch(epoch))
            theirs.append(timed_epoch(scratch))
        best = {part: min(run[part] for run in mine) for part in PARTS}
        total = sum(best[part] for part in PARTS if part != "teacher")
        scratch_total = sum(min(run[part] for run in theirs) for part in PARTS if part != "teacher")
        cells = " | ".join(f"{best[part]:.2f}" for part in PARTS)
        print(f"| {name} | {epoch.prepare_s:.2f} | {cells} | {total:.2f} | {total / scratch_total:.1f} |", flush=True)


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["citeulike-t-shape"]), sys.argv[2].split(",") if len(sys.argv) > 2 else None,
         int(sys.argv[3]) if len(sys.argv) > 3 else 3)
