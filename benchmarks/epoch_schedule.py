"""One strategy's training epoch at several points of its schedule, beside scratch's (for the README).

    python -m benchmarks.epoch_schedule STRATEGY EPOCHS [SHAPE]   # e.g. htd 1,10,20,40 citeulike-t-shape

Annealed strategies (DE, HTD, PCKD: a Gumbel-softmax temperature falling with the epoch) cost
what their gates let them skip, so one epoch index does not describe them: this times the epoch
of benchmarks/epoch_breakdown.py (one intra-op thread, the RCE-KD reproduction's pairing on a
synthetic catalogue of a real dataset's shape) with on_epoch_start(e) for each e of EPOCHS, each
followed by a scratch epoch for the ratio. Run it under two checkouts (PYTHONPATH) to compare code.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from benchmarks import epoch_breakdown
from benchmarks._support import BenchSession


def seconds(parts) -> float:
    """An epoch's wall from timed_epoch's parts (the teacher's share is inside the others)."""
    return sum(value for part, value in parts.items() if part != "teacher")


def main(name: str, epochs: list[int], shape: str = "citeulike-t-shape") -> None:
    torch.set_num_threads(1)
    bench = BenchSession(Path(tempfile.mkdtemp(prefix="kdbench-schedule-")))
    epoch, scratch = bench.training_epoch(shape, name), bench.training_epoch(shape, "scratch")
    epoch_breakdown.timed_epoch(scratch)  # warm-up
    print("| strategy | epoch | temperature | seconds | scratch | x scratch |\n| --- |" + " ---: |" * 5)
    for index in epochs:
        epoch_breakdown.EPOCH = index  # timed_epoch calls on_epoch_start(EPOCH)
        mine = seconds(epoch_breakdown.timed_epoch(epoch))
        theirs = seconds(epoch_breakdown.timed_epoch(scratch))
        temperature = getattr(epoch.strategy, "temperature", float("nan"))
        print(f"| {name} | {index} | {temperature:.3g} | {mine:.1f} | {theirs:.2f} | {mine / theirs:.0f} |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m benchmarks.epoch_schedule STRATEGY EPOCHS [SHAPE]")
    main(sys.argv[1], [int(e) for e in sys.argv[2].split(",")], *sys.argv[3:4])
