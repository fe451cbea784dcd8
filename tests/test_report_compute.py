"""The compute per dataset in the leaderboard header (kdbench.report.compute)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from kdbench.report.compute import compute_markdown, compute_table


def _run(dataset, pairing, method, seed, wall, threads="2", cpu="CPU A", **parts):
    row = {"dataset": dataset, "pairing": pairing, "teacher": pairing.split("->")[0], "method": method,
           "seed": seed, "created": "2025-01-01", "wall_seconds": wall, "env_threads": threads, "env_cpu": cpu}
    for column in ("train_seconds", "eval_seconds", "test_seconds", "kd_prepare_seconds",
                   "teacher_load_seconds", "cost_seconds"):
        row[column] = parts.get(column, math.nan)
    return row


@pytest.fixture()
def runs():
    return pd.DataFrame([
        # the cached teacher, copied under both pairings: counted once for the dataset
        _run("d", "T:64->S:8", "teacher", 0, 100.0, train_seconds=80.0, eval_seconds=10.0),
        _run("d", "T:64->S:4", "teacher", 0, 100.0, train_seconds=80.0, eval_seconds=10.0),
        _run("d", "T:64->S:8", "kd", 0, 50.0, train_seconds=30.0, eval_seconds=5.0, test_seconds=1.0,
             kd_prepare_seconds=2.0, teacher_load_seconds=1.0, cost_seconds=1.0),
        _run("d", "T:64->S:4", "kd", 0, 40.0, threads=None, cpu="CPU B", train_seconds=20.0),
        _run("e", "T:64->S:8", "scratch", 0, 3600.0, threads="1", train_seconds=1800.0, eval_seconds=1800.0),
    ])


def test_core_seconds_parts_and_machines_per_dataset_and_pairing(runs):
    table = compute_table(runs).set_index(["dataset", "pairing"])
    d = table.loc["d", ""]
    # teacher 100 x 2 threads once, kd 50 x 2, kd 40 x 1 (threads not recorded)
    assert d["n_runs"] == 3 and d["core_seconds"] == pytest.approx(200 + 100 + 40)
    assert d["training"] == pytest.approx(160 + 60 + 20) and d["validation"] == pytest.approx(20 + 10)
    assert d["prepare"] == pytest.approx(4.0) and d["test"] == pytest.approx(2.0)
    assert d["other"] == pytest.approx(340 - (240 + 30 + 2 + 4 + 2 + 2))
    assert d["machines"] == "CPU A, CPU B"
    pairing = table.loc["d", "T:64->S:8"]  # the teacher counts in each pairing it serves
    assert pairing["n_runs"] == 2 and pairing["core_seconds"] == pytest.approx(300.0)
    assert math.isnan(table.loc["e", ""]["test"])  # not recorded: not zero
    assert list(table.index) == [("d", ""), ("d", "T:64->S:4"), ("d", "T:64->S:8"), ("e", ""), ("e", "T:64->S:8")]


def test_markdown_rows_give_hours_and_shares(runs):
    lines = compute_markdown(compute_table(runs))
    e = next(line for line in lines[0].splitlines() if line.startswith("| **e**"))
    cells = [c.strip() for c in e.strip("|").split("|")]
    assert cells[:5] == ["**e**", "1", "1.00 (1h 00m 00s)", "50%", "50%"] and cells[5] == "—"
    assert cells[-1] == "CPU A"
    assert compute_markdown(compute_table(runs.iloc[0:0])) == []


def test_tuning_core_seconds_per_dataset_and_pairing_and_tuned_only_pairings(runs):
    tuning = pd.DataFrame([
        {"dataset": "d", "pairing": "T:64->S:8", "strategy": "kd", "compute_seconds": 300.0, "threads": 1},
        {"dataset": "d", "pairing": "T:64->S:8", "strategy": "teacher", "compute_seconds": 100.0, "threads": 2},
        {"dataset": "d", "pairing": "T:64->S:2", "strategy": "kd", "compute_seconds": 60.0, "threads": None},
        {"dataset": "f", "pairing": "T:64->S:8", "strategy": "kd", "compute_seconds": 7200.0, "threads": 1},
    ])
    table = compute_table(runs, tuning).set_index(["dataset", "pairing"])
    assert table.loc[("d", ""), "tuning_core_seconds"] == pytest.approx(300 + 200 + 60)  # threads missing: 1
    assert table.loc[("d", "T:64->S:8"), "tuning_core_seconds"] == pytest.approx(500.0)
    assert math.isnan(table.loc[("d", "T:64->S:4"), "tuning_core_seconds"])  # never tuned: not zero
    # tuned, no run yet: a row with no runs, so the compute spent is never hidden
    assert table.loc[("d", "T:64->S:2"), "n_runs"] == 0 and math.isnan(table.loc[("d", "T:64->S:2"), "core_seconds"])
    assert table.loc[("f", ""), "n_runs"] == 0 and table.loc[("f", ""), "tuning_core_seconds"] == 7200.0
    assert math.isnan(table.loc[("e", ""), "tuning_core_seconds"])
    f = next(line for line in compute_markdown(compute_table(runs, tuning))[0].splitlines()
             if line.startswith("| **f**"))
    cells = [c.strip() for c in f.strip("|").split("|")]
    assert cells[1:3] == ["0", "—"] and cells[-3] == "2.00 (2h 00m 00s)" and cells[-2] == ""  # no ensemble: blank


def test_ensemble_teachers_count_once_per_dataset_by_cache_key(runs):
    # HetComp's seeds and pairings learn from the same cached extra teachers: each is counted once
    lightgcn, bpr = ("key-l", 600.0, 2.0), ("key-b", 100.0, None)  # threads not recorded: 1
    ensemble = [_run("d", "T:64->S:8", "hetcomp", seed, 30.0) | {"ensemble_teachers": (lightgcn, bpr)}
                for seed in (0, 1)]
    ensemble.append(_run("d", "T:64->S:4", "hetcomp", 0, 30.0) | {"ensemble_teachers": (lightgcn,)})
    old = _run("e", "T:64->S:8", "hetcomp", 0, 30.0) | {"ensemble_teachers": (("key-x", None, None),)}
    table = compute_table(pd.concat([runs.assign(ensemble_teachers=[()] * len(runs)), pd.DataFrame(ensemble + [old])],
                                    ignore_index=True)).set_index(["dataset", "pairing"])
    assert table.loc[("d", ""), "ensemble_core_seconds"] == pytest.approx(600 * 2 + 100)
    assert table.loc[("d", "T:64->S:8"), "ensemble_core_seconds"] == pytest.approx(1300.0)
    assert table.loc[("d", "T:64->S:4"), "ensemble_core_seconds"] == pytest.approx(1200.0)
    assert math.isnan(table.loc[("e", ""), "ensemble_core_seconds"])  # a record from before the figure: not 0
    # the runs' own core-seconds are unchanged: the teachers are not runs
    assert table.loc[("d", ""), "core_seconds"] == pytest.approx(340 + 3 * 60)
