"""Fixtures and report hooks of the micro-benchmarks.

pytest imports this file in every run (benchmarks/ is a testpath), also the plain `pytest` that
leaves the benchmarks uncollected: it imports nothing heavy at module level, and its hooks do
nothing unless benchmarks ran.
"""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="session", autouse=True)
def torch_threads() -> int:
    """One intra-op thread per core this process may use, for every benchmark."""
    import torch

    from benchmarks._support import THREADS

    torch.set_num_threads(THREADS)
    return THREADS


@pytest.fixture(scope="session")
def bench(tmp_path_factory, torch_threads):
    """The run's catalogues, models and prepared strategies (see benchmarks/_support.py)."""
    from benchmarks._support import BenchSession

    return BenchSession(tmp_path_factory.mktemp("kdbench-benchmarks"))


def pytest_benchmark_update_machine_info(config, machine_info):
    import torch

    from benchmarks._support import CORES, THREADS

    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = THREADS
    machine_info["cores"] = CORES


def pytest_terminal_summary(terminalreporter):
    support = sys.modules.get("benchmarks._support")
    if support is None or not support.SUMMARY or support.SMOKE:  # a smoke run's figures mean nothing
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("-", f"kdbench summary (torch threads: {support.THREADS})")
    steps = support.SUMMARY.get("training step")
    if steps:
        write("KD training step, time as a multiple of scratch's (same batch; fastest calls):")
        for (dataset, epoch), rows in sorted(_grouped(steps, ("dataset", "epoch")).items()):
            cells = ", ".join(f"{row['strategy']} {row['ratio_to_scratch']:.2f}x" for row in rows)
            write(f"  {dataset}, epoch {epoch}: {cells}")
    epochs = support.SUMMARY.get("training epoch")
    if epochs:
        write("Training epoch (on_epoch_start + the steps, scaled to every batch), seconds and x scratch's epoch:")
        for (dataset,), rows in _grouped(epochs, ("dataset",)).items():
            cells = ", ".join(f"{row['strategy']} {row['seconds']:.2f} s {row['ratio_to_scratch']:.1f}x" for row in rows)
            write(f"  {dataset}: {cells}")
    inference = support.SUMMARY.get("inference")
    if inference:
        write("Inference (scores + top-K): users/s, and the roofline's time over the model's (U @ I.T + topk,")
        write("same shapes; fastest calls):")
        for (dataset, batch), rows in _grouped(inference, ("dataset", "batch_users")).items():
            cells = ", ".join(
                f"{row['model']} {row['users_per_s']:,.0f}/s ({row['roofline_fraction']:.0%})" for row in rows
            )
            write(f"  {dataset}, {batch} user(s): {cells}")
    validation = support.SUMMARY.get("validation pass")
    if validation:
        write("Validation pass (BPR:20, every validated user, exact top-K): seconds, and the roofline's time over the")
        write("pass's (U @ I.T + mask + topk in the same batches; fastest calls; target >= 80%):")
        for row in validation:
            write(f"  {row['dataset']} ({row['validated_users']:,} users): {row['seconds']:.3f} s "
                  f"({row['roofline_fraction']:.0%})")
    sequential = support.SUMMARY.get("sequential inference")
    if sequential:
        write("Sequential inference (encode the input, score, top-K): queries/s, and the roofline's time over the")
        write("model's (Q @ I.T + topk of ready query vectors: the gap is the sequence encoder; fastest calls):")
        for (dataset, batch), rows in _grouped(sequential, ("dataset", "batch_queries")).items():
            cells = ", ".join(
                f"{row['model']} {row['queries_per_s']:,.0f}/s ({row['roofline_fraction']:.0%})" for row in rows
            )
            write(f"  {dataset}, {batch} quer{'ies' if batch > 1 else 'y'}: {cells}")


def _grouped(rows, keys):
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    return groups
