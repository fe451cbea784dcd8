"""Cost in the report: inference cost per model shape (`kdbench cost` files), training cost per
strategy, the compression curves, and deterministic figures, from hand-made records and cost files."""

from __future__ import annotations

import json
import math

import matplotlib
import pytest
import yaml

from kdbench.run import inference_cost
from kdbench.cli import main
from kdbench.run.record import RunStore
from kdbench.report import aggregate, compression_curves, load_costs, load_runs, speedups, write_reports

TEACHER = "BPR:64"
ENV = {"kdbench": "0.1.0", "recbole": "1.2.1", "torch": "2.3.0", "python": "3.11.9", "cpu": "Test CPU",
       "gpu": "none", "threads": "1"}
# (student, label) -> NDCG@10 per seed 0, 1, 2
NDCG = {("BPR:4", "scratch"): [0.14, 0.16, 0.18], ("BPR:4", "kd"): [0.20, 0.22, 0.24],
        ("BPR:8", "scratch"): [0.24, 0.26, 0.28], ("BPR:8", "kd"): [0.29, 0.30, 0.31]}
PARAMS = {"BPR:64": 6400, "BPR:8": 800, "BPR:4": 400}
SECONDS_PER_EPOCH = {"scratch": [1.0, 1.2, 0.8], "kd": [1.5, 1.8, 1.2]}
PREPARE = {"scratch": [0.0, 0.0, 0.0], "kd": [2.0, 3.0, 4.0]}
BEST_EPOCH = [10, 20, 30]


def record(student: str, label: str, seed: int, ndcg: float) -> dict:
    is_teacher = label == "teacher"
    model = TEACHER if is_teacher else student
    spe = 0.5 if is_teacher else SECONDS_PER_EPOCH[label][seed]
    return {
        "dataset": "toy", "teacher": TEACHER, "student": student, "pairing": f"{TEACHER}->{student}",
        "model": model, "strategy": label, "label": label, "seed": seed, "status": "ok", "environment": ENV,
        "family": "teacher" if is_teacher else "baseline" if label == "scratch" else "response",
        "created": "2025-01-01T10:00:00+00:00", "wall_seconds": 10.0,
        "test": {"ndcg@10": ndcg, "ndcg@20": ndcg, "recall@10": ndcg, "recall@20": ndcg},
        "per_user": {"user_ids": [1, 2, 3], "ndcg@10": [ndcg, ndcg + 0.01 * seed, ndcg - 0.02]},
        "cost": {"params": PARAMS[model], "size_bytes": 4 * PARAMS[model]},
        "training": {"seconds_per_epoch": spe, "best_epoch": 40 if is_teacher else BEST_EPOCH[seed], "epochs_run": 50,
                     "hit_epoch_cap": False, "train_seconds": 50 * spe,
                     "kd_prepare_seconds": 0.0 if is_teacher else PREPARE[label][seed]},
        "teacher_test": {"ndcg@10": 0.40},
    }


def measurement(catalogue: str, n_items: int, model: str, kind: str, batch: int, median: float,
                q25: float | None = None, q75: float | None = None) -> dict:
    dim = int(model.split(":")[1])
    return {"catalogue": catalogue, "synthetic": catalogue != "toy", "n_items": n_items, "n_users": 50,
            "kind": kind, "model": model, "dim": dim, "params": PARAMS.get(model) if kind == "model" else None,
            "size_bytes": 4 * PARAMS[model] if kind == "model" else None,
            "batch_users": batch, "median_s": median, "q25_s": q25 or median, "q75_s": q75 or median,
            "min_s": (q25 or median) / 2, "max_s": (q75 or median) * 2, "n": 11}


COST = {
    "kdbench_cost": 1, "dataset": "toy", "teacher": TEACHER, "shapes": ["BPR:64", "BPR:4", "BPR:8"],
    "settings": {}, "environment": ENV, "created": "2025-01-02T10:00:00+00:00",
    "measurements": [
        measurement("toy", 41, "BPR:64", "model", 256, 0.010, 0.008, 0.0125),
        measurement("toy", 41, "BPR:8", "model", 256, 0.004, 0.002, 0.005),
        measurement("toy", 41, "BPR:4", "model", 256, 0.004),
        measurement("toy", 41, "BPR:64", "model", 1, 0.0002),
        measurement("toy", 41, "BPR:8", "model", 1, 0.0001),
        measurement("synthetic-100000", 100_000, "BPR:64", "model", 256, 0.5),
        measurement("synthetic-100000", 100_000, "BPR:8", "model", 256, 0.25),
        measurement("synthetic-100000", 100_000, "BPR:4", "model", 256, 0.25),
        measurement("synthetic-100000", 100_000, "roofline:64", "roofline", 256, 0.45),
        measurement("synthetic-100000", 100_000, "roofline:8", "roofline", 256, 0.2),
        measurement("synthetic-100000", 100_000, "roofline:4", "roofline", 256, 0.15),
    ],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("cost") / "results"
    store = RunStore(root)
    for student in ("BPR:4", "BPR:8"):
        store.write("toy", f"{TEACHER}->{student}", "teacher", 0, record(student, "teacher", 0, 0.40))
    for (student, label), values in NDCG.items():
        for seed, value in enumerate(values):
            store.write("toy", f"{TEACHER}->{student}", label, seed, record(student, label, seed, value))
    path = root / "cost" / "toy" / "BPR-64.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(COST))
    return root


@pytest.fixture(scope="module")
def table(results):
    return aggregate(load_runs(results), costs=load_costs(results))


def row(table, student, strategy):
    found = table[(table["student"] == student) & (table["strategy"] == strategy)]
    assert len(found) == 1
    return found.iloc[0]


def test_training_cost_per_strategy_is_hand_computed_with_its_spread_over_seeds(table):
    kd = row(table, "BPR:8", "kd")
    # each seed's epoch time over scratch's mean (1.0): 1.5, 1.8, 1.2
    assert kd["epoch_time_ratio_vs_scratch"] == pytest.approx(1.5)
    assert kd["epoch_time_ratio_std"] == pytest.approx(0.3)
    # prepare + s/epoch x best epoch: 2 + 15, 3 + 36, 4 + 36 = 17, 39, 40
    assert kd["time_to_best_s_mean"] == pytest.approx(32.0)
    assert kd["time_to_best_s_std"] == pytest.approx(13.0)
    assert kd["kd_prepare_s_mean"] == pytest.approx(3.0) and kd["kd_prepare_s_std"] == pytest.approx(1.0)
    assert kd["best_epoch_mean"] == pytest.approx(20.0)
    scratch = row(table, "BPR:8", "scratch")
    assert scratch["time_to_best_s_mean"] == pytest.approx((10 + 24 + 24) / 3)


def test_a_rows_inference_cost_is_its_shapes_at_the_datasets_catalogue(table):
    kd, scratch, teacher = row(table, "BPR:8", "kd"), row(table, "BPR:8", "scratch"), row(table, "BPR:8", "teacher")
    assert kd["throughput_users_per_s"] == scratch["throughput_users_per_s"] == pytest.approx(256 / 0.004)
    assert (kd["throughput_iqr_low"], kd["throughput_iqr_high"]) == pytest.approx((256 / 0.005, 256 / 0.002))
    assert kd["latency_p50_ms"] == pytest.approx(0.1)
    assert teacher["throughput_users_per_s"] == pytest.approx(25_600)
    assert math.isnan(row(table, "BPR:4", "kd")["latency_p50_ms"])  # not measured: no figure


def test_the_students_speed_up_is_set_against_the_rooflines_of_the_same_sizes(results):
    ratios = speedups(load_costs(results)).set_index(["catalogue", "student"])
    big = ratios.loc[("synthetic-100000", "BPR:8")]
    assert big["speedup"] == pytest.approx(2.0) and big["roofline_speedup"] == pytest.approx(2.25)
    assert big["speedup_vs_roofline"] == pytest.approx(2.0 / 2.25) and big["matches_roofline"] and big["deployment"]
    small = ratios.loc[("synthetic-100000", "BPR:4")]
    assert small["roofline_speedup"] == pytest.approx(3.0) and not small["matches_roofline"]
    toy = ratios.loc[("toy", "BPR:8")]
    assert toy["speedup"] == pytest.approx(2.5) and math.isnan(toy["roofline_speedup"]) and not toy["deployment"]


def test_compression_curves_give_each_size_its_mean_and_t_interval(table):
    curves = compression_curves(table)
    assert set(zip(curves["strategy"], curves["student"])) == {(s, d) for s in ("kd", "scratch") for d in ("BPR:4", "BPR:8")}
    kd4 = curves[(curves["strategy"] == "kd") & (curves["student"] == "BPR:4")].iloc[0]
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert kd4["ndcg@10_mean"] == pytest.approx(0.22)
    assert (kd4["ndcg@10_ci_low"], kd4["ndcg@10_ci_high"]) == pytest.approx((0.22 - half, 0.22 + half))
    assert kd4["compression_vs_teacher"] == pytest.approx(16.0) and kd4["retained_pct"] == pytest.approx(55.0)
    assert kd4["retained_ci_high"] == pytest.approx((0.22 + half) / 0.40 * 100)
    assert list(curves[curves["strategy"] == "kd"]["student"]) == ["BPR:4", "BPR:8"]  # by size


def test_the_leaderboard_shows_one_inference_figure_per_shape_training_cost_and_the_sweep(results, tmp_path):
    write_reports(results, tmp_path, plot=False)
    text = (tmp_path / "leaderboard.md").read_text()
    assert "64,000 [51,200–128,000]" in text  # BPR:8's shape, on each of its rows
    assert text.count("64,000 [51,200–128,000]") == 3  # scratch and kd rows, and the shape table
    assert "1.50 ± 0.30" in text and "32 ± 13" in text
    assert "## Compression: the same methods at several student sizes" in text
    assert "0.2200 (55.0%), 3 seeds" in text
    assert "100,000 (deployment size)" in text and "2.25×" in text
    params = PARAMS["BPR:8"]
    shape_row = next(line for line in text.splitlines() if line.startswith("| BPR:8 "))
    assert [cell.strip() for cell in shape_row.split("|")[2:4]] == [f"{params:,}", f"{4 * params:,}"]  # bytes too
    payload = json.loads((tmp_path / "leaderboard.json").read_text())
    assert {r["student"] for r in payload["speedups"]} == {"BPR:4", "BPR:8"}
    assert len(payload["compression"]) == 4 and len(payload["inference_cost"]) == len(COST["measurements"])


def test_figures_are_byte_identical_from_the_same_records_whatever_the_users_matplotlib_style(results, tmp_path):
    first = {p.name: p.read_bytes() for p in write_reports(results, tmp_path / "a") if p.suffix == ".png"}
    with matplotlib.rc_context({"font.size": 17, "lines.linewidth": 4, "axes.grid": True}):
        second = {p.name: p.read_bytes() for p in write_reports(results, tmp_path / "b") if p.suffix == ".png"}
    assert set(first) == {"pareto.png", "compression.png"}
    assert first == second
    assert b"Software" not in first["pareto.png"] and b"matplotlib" not in first["compression.png"].lower()


def test_a_damaged_cost_file_is_one_line_naming_it(results, tmp_path, capsys):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    path = copy / "cost" / "toy" / "BPR-64.json"
    damaged = json.loads(path.read_text())
    damaged["measurements"][0]["median_s"] = "fast"
    path.write_text(json.dumps(damaged))
    assert main(["report", "--results-dir", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kdbench: error: damaged file {path}: measurement 0: 'median_s' is 'fast'")
    assert not (copy / "leaderboard.md").exists()
    assert main(["verify", "--results-dir", str(copy)]) == 1
    assert f"error: damaged file {path}" in capsys.readouterr().out


def test_interleaved_timing_reverses_the_order_every_other_round(monkeypatch):
    calls = []
    targets = [lambda name=name: calls.append(name) for name in "ABC"]
    times = inference_cost.time_interleaved(targets, 3)
    assert "".join(calls) == "ABCCBAABC"
    assert [len(t) for t in times] == [3, 3, 3]
    calls.clear()
    inference_cost.time_interleaved(targets, 1, first_round=1)
    assert "".join(calls) == "CBA"


def test_spread_gives_median_quartiles_and_range():
    assert inference_cost.spread([4.0, 1.0, 3.0, 2.0, 5.0]) == {
        "median_s": 3.0, "q25_s": 2.0, "q75_s": 4.0, "min_s": 1.0, "max_s": 5.0, "n": 5}


def test_the_cost_command_measures_each_teacher_with_its_students_in_one_sitting(toy_dir, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "datasets": ["toy"], "data_path": str(toy_dir), "seeds": [0], "strategies": ["scratch"],
        "pairings": [{"teacher": "BPR:8", "student": "BPR:4"},
                     {"teacher": "BPR:8", "students": ["BPR:2", "BPR:4"]},
                     {"teacher": "LightGCN:8", "student": "LightGCN:2"}],
    }))
    args = ["cost", "--suite", str(suite), "--catalogues", "", "--rounds", "3", "--warmup", "1",
            "--min-seconds", "0.01", "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0, capsys.readouterr().err
    costs = load_costs(tmp_path / "results")
    bpr = costs[costs["teacher"] == "BPR:8"]
    assert list(dict.fromkeys(bpr["model"])) == ["BPR:8", "BPR:2", "BPR:4", "roofline:8", "roofline:4", "roofline:2"]
    assert set(bpr["batch_users"]) == {256, 1} and (bpr["n"] >= 3).all() and (bpr["catalogue"] == "toy").all()
    assert ((bpr["q25_s"] <= bpr["median_s"]) & (bpr["median_s"] <= bpr["q75_s"])).all()
    assert set(costs[costs["teacher"] == "LightGCN:8"]["model"]) == {"LightGCN:8", "LightGCN:2", "roofline:8",
                                                                     "roofline:2"}
    payload = json.loads((tmp_path / "results" / "cost" / "toy" / "BPR-8.json").read_text())
    assert inference_cost.check_cost(payload) is None and payload["settings"]["threads"] == 1
    assert main(args[:3] + ["--catalogues", "5000"]) == 2
    assert "--catalogues must be at least 10,000 items" in capsys.readouterr().err


def test_a_compressed_shape_is_told_from_a_dense_one_by_its_name():
    """The report falls back to a run's own cost for a dense shape `cost` has not timed, never for a
    compressed format (its runs score through dense tables, not its kernel)."""
    from kdbench.evaluation.compressed_cost import CSR, INT4, INT8, compressed_name, is_compressed_shape

    assert all(is_compressed_shape(name) for name in (compressed_name("BPR:64", INT8), compressed_name("BPR:5", INT4),
                                                      compressed_name("LightGCN:64", CSR, "LightGCN:8")))
    assert not any(is_compressed_shape(name) for name in ("BPR:5", "LightGCN:64", "SASRec:16:L1H1", "GRU4Rec:16"))


def test_ensemble_teachers_seconds_per_strategy(tmp_path):
    """HetComp's extra teachers: their training's wall seconds (the record's ensemble after the pairing's
    own teacher), mean over seeds; 0 for a strategy without them; NaN where a record predates them."""
    store = RunStore(tmp_path)
    pairing = f"{TEACHER}->BPR:8"
    for seed, value in enumerate(NDCG[("BPR:8", "scratch")]):
        store.write("toy", pairing, "scratch", seed, record("BPR:8", "scratch", seed, value))
        ensemble = record("BPR:8", "kd", seed, value + 0.01) | {"strategy": "hetcomp", "label": "hetcomp"}
        ensemble["ensemble"] = [{"teacher": TEACHER, "key": "own", "wall_seconds": 500.0, "threads": "1"},
                                {"teacher": "LightGCN:64", "key": "l", "wall_seconds": 300.0, "threads": "2"},
                                {"teacher": "BPR:32", "key": "b", "wall_seconds": 60.0 + seed, "threads": "1"}]
        store.write("toy", pairing, "hetcomp", seed, ensemble)
        older = ensemble | {"ensemble": [{"teacher": TEACHER, "key": "own"}, {"teacher": "BPR:32", "key": "b"}]}
        store.write("toy", pairing, "hetcomp@K=5", seed, older | {"label": "hetcomp@K=5"})
    runs = load_runs(tmp_path)
    first = runs[(runs["strategy"] == "hetcomp") & (runs["seed"] == 0)].iloc[0]
    assert first["ensemble_teachers"] == (("l", 300.0, 2.0), ("b", 60.0, 1.0))  # threads recorded as text
    table = aggregate(runs)
    assert row(table, "BPR:8", "hetcomp")["ensemble_teachers_s_mean"] == pytest.approx(300 + 61)  # own teacher left out
    assert row(table, "BPR:8", "scratch")["ensemble_teachers_s_mean"] == 0.0
    assert math.isnan(row(table, "BPR:8", "hetcomp@K=5")["ensemble_teachers_s_mean"])
