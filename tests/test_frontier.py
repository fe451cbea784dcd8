"""The compression frontier in the report (issue 28): points, Pareto front, best model within each
size, the Markdown section and frontier.png, from hand-made records; nothing without a baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdbench.run.record import RunStore
from kdbench.report import aggregate, load_costs, load_runs, write_reports
from kdbench.report.frontier import best_by_size, frontier_points, pareto_front, point_kind

TEACHER = "BPR:64"
ROWS = 1000  # users + items
# (student, label, family, model, bytes, params) -> NDCG@10 of seeds 0 and 1
RUNS = {
    ("BPR:4", "teacher", "teacher", TEACHER, 4 * 64 * ROWS, 64 * ROWS): [0.40, 0.40],
    ("BPR:8", "teacher", "teacher", TEACHER, 4 * 64 * ROWS, 64 * ROWS): [0.40, 0.40],
    ("BPR:4", "scratch", "baseline", "BPR:4", 16 * ROWS, 4 * ROWS): [0.20, 0.22],
    ("BPR:8", "scratch", "baseline", "BPR:8", 32 * ROWS, 8 * ROWS): [0.30, 0.32],
    ("BPR:4", "kd", "response", "BPR:4", 16 * ROWS, 4 * ROWS): [0.25, 0.27],
    ("BPR:8", "kd", "response", "BPR:8", 32 * ROWS, 8 * ROWS): [0.33, 0.35],
    ("BPR:4", "rd", "ranking", "BPR:4", 16 * ROWS, 4 * ROWS): [0.26, 0.28],  # one size only: not a point
    ("BPR:4", "prune", "compression", "BPR:64 CSR@BPR:4", 16 * ROWS - 4, 1500): [0.15, 0.15],
    ("BPR:8", "prune", "compression", "BPR:64 CSR@BPR:8", 32 * ROWS - 4, 3500): [0.36, 0.36],
    ("BPR:4", "quant", "compression", "BPR:64 int8", 68 * ROWS, 64 * ROWS): [0.399, 0.399],
    ("BPR:8", "quant", "compression", "BPR:64 int8", 68 * ROWS, 64 * ROWS): [0.399, 0.399],  # the same model
    ("BPR:8", "kd+ptq", "response+compression", "BPR:8 int8", 12 * ROWS, 8 * ROWS): [0.32, 0.34],
}


def record(student, label, family, model, size, params, seed, ndcg) -> dict:
    return {
        "dataset": "toy", "teacher": TEACHER, "student": student, "pairing": f"{TEACHER}->{student}",
        "model": model, "strategy": label, "label": label, "seed": seed, "status": "ok", "family": family,
        "created": "2025-01-01T10:00:00+00:00", "wall_seconds": 10.0,
        "test": {"ndcg@10": ndcg, "ndcg@20": ndcg, "recall@10": ndcg, "recall@20": ndcg},
        "per_user": {"user_ids": [1, 2, 3], "ndcg@10": [ndcg, ndcg + 0.01, ndcg - 0.01]},
        "cost": {"params": params, "size_bytes": size},
        "training": {"seconds_per_epoch": 1.0, "best_epoch": 5, "epochs_run": 10, "hit_epoch_cap": False,
                     "train_seconds": 10.0, "kd_prepare_seconds": 0.0},
        "teacher_test": {"ndcg@10": 0.40},
    }


def measurement(model: str, kind: str, batch: int, median: float) -> dict:
    return {"catalogue": "toy", "synthetic": False, "n_items": 500, "n_users": 500, "kind": kind, "model": model,
            "dim": 64 if model.startswith(TEACHER) else 8, "params": None, "batch_users": batch, "median_s": median,
            "q25_s": median, "q75_s": median, "min_s": median, "max_s": median, "n": 11}


def write_runs(root, runs) -> None:
    store = RunStore(root)
    for (student, label, family, model, size, params), values in runs.items():
        for seed, value in enumerate(values):
            store.write("toy", f"{TEACHER}->{student}", label, seed,
                        record(student, label, family, model, size, params, seed, value))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("frontier") / "results"
    write_runs(root, RUNS)
    cost = {"kdbench_cost": 1, "dataset": "toy", "teacher": TEACHER, "measurements": [
        measurement(TEACHER, "model", 256, 0.010), measurement(TEACHER, "model", 1, 0.001),
        measurement(f"{TEACHER} int8", "compressed", 256, 0.020), measurement(f"{TEACHER} int8", "compressed", 1, 0.002),
        measurement(f"{TEACHER} CSR@BPR:8", "compressed", 256, 0.050),
        measurement(f"{TEACHER} CSR@BPR:8", "compressed", 1, 0.004)]}
    path = root / "cost" / "toy" / "BPR-64.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(cost))
    return root


@pytest.fixture(scope="module")
def points(results):
    return frontier_points(aggregate(load_runs(results), costs=load_costs(results)))


def test_pareto_front_by_hand():
    size = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    quality = np.array([0.1, 0.3, 0.2, 0.25, 0.4])
    assert pareto_front(size, quality).tolist() == [True, True, False, False, True]


def test_point_kinds():
    assert point_kind("kd+ptq", "response+compression") == "compression"
    assert [point_kind("scratch", "baseline"), point_kind("kd", "response"), point_kind("x", "teacher")] == [
        "scratch", "distillation", "teacher"]


def test_points_keep_sweeps_and_baselines_once_each(points):
    labels = list(zip(points["strategy"], points["model"]))
    assert ("rd", "BPR:4") not in labels  # a distillation method at one size only
    assert labels.count(("quant", "BPR:64 int8")) == 1 and labels.count(("teacher", TEACHER)) == 1
    assert len(points) == 9
    on_front = set(points.loc[points["on_front"], "model"] + " " + points.loc[points["on_front"], "strategy"])
    # the int8 distilled BPR:8 (12,000 B, 0.33) is smaller and better than every BPR:4 point; pruned at
    # 8's budget beats kd at 8; then the int8 teacher and the teacher
    assert on_front == {"BPR:8 int8 kd+ptq", "BPR:64 CSR@BPR:8 prune", "BPR:64 int8 quant", "BPR:64 teacher"}
    quant = points[points["strategy"] == "quant"].iloc[0]
    assert quant["latency_p50_ms"] == pytest.approx(2.0)  # its compressed shape's measured latency


def test_best_model_within_each_size(points, results):
    best = best_by_size(points).set_index("budget")
    assert list(best.index) == ["BPR:4", "BPR:8", TEACHER]
    assert best.loc["BPR:4", "best"] == "kd+ptq BPR:8 int8" and best.loc["BPR:4", "best_ndcg"] == pytest.approx(0.33)
    assert best.loc["BPR:4", "compression"] == "kd+ptq BPR:8 int8" and best.loc["BPR:4", "best_bytes"] == 12 * ROWS
    assert best.loc["BPR:4", "distillation"] == "kd BPR:4" and best.loc["BPR:4", "scratch_ndcg"] == pytest.approx(0.21)
    # the table's own points count every distilled student: rd, run at BPR:4 only, beats kd there
    every = best_by_size(frontier_points(aggregate(load_runs(results), costs=load_costs(results)), all_students=True))
    every = every.set_index("budget")
    assert every.loc["BPR:4", "distillation"] == "rd BPR:4" and every.loc["BPR:4", "distillation_ndcg"] == pytest.approx(0.27)
    assert every.loc["BPR:4", "best"] == "kd+ptq BPR:8 int8" and every.loc["BPR:8", "distillation"] == "kd BPR:8"
    assert best.loc["BPR:8", "best"] == "prune BPR:64 CSR@BPR:8" and best.loc["BPR:8", "scratch_ndcg"] == pytest.approx(0.31)
    assert best.loc["BPR:8", "distillation"] == "kd BPR:8"
    assert best.loc[TEACHER, "best"] == f"teacher {TEACHER}"


def test_the_leaderboard_shows_the_frontier_and_draws_it(results, tmp_path):
    paths = write_reports(results, tmp_path)
    text = (tmp_path / "leaderboard.md").read_text()
    assert "## Compression frontier: the best model within each size" in text
    assert "prune BPR:64 CSR@BPR:8: 0.3600 (31,996 B)" in text
    assert "rd BPR:4: 0.2700 (16,000 B)" in text  # best distilled within BPR:4, though run at one size
    assert "| toy       | BPR:64 CSR@BPR:8 |" in text or "BPR:64 CSR@BPR:8 | 500" in text
    assert "0.20×" in text  # CSR at 8's budget serves 256 users 5x slower than the dense teacher
    assert text.index("## Compression frontier") < text.index("## Legend") if "## Legend" in text else True
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tmp_path / "frontier.png" in paths


def test_no_frontier_without_a_compression_baseline(tmp_path):
    root = tmp_path / "results"
    write_runs(root, {key: value for key, value in RUNS.items() if "compression" not in key[2]})
    paths = write_reports(root, tmp_path / "out")
    assert not (tmp_path / "out" / "frontier.png").exists() and all(p.name != "frontier.png" for p in paths)
    assert "Compression frontier" not in (tmp_path / "out" / "leaderboard.md").read_text()
