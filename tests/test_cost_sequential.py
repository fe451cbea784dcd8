"""Sequential shapes are costed once per shape, with repeats, like the general ones (`kdbench cost`),
and the sequential tables read that figure instead of each run's own."""

from __future__ import annotations

import json

import pytest
import yaml

from kdbench.run import inference_cost
from kdbench.cli import main
from kdbench.families import BackboneSpec
from kdbench.run.record import RunStore
from kdbench.report import aggregate, load_costs, load_runs
from kdbench.run.suites import expand, load_suite

TEACHER, STUDENT = "SASRec:16:L1H1", "SASRec:8:L1H1"


def _suite(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "datasets": ["ml-100k"], "seeds": [0], "strategies": ["scratch"], "protocol": "leave-one-out",
        "pairings": [{"teacher": TEACHER, "student": STUDENT}],
        "train": {"max_epochs": 1}, "teacher_train": {"max_epochs": 1}}))
    return suite


def test_a_sequential_pairing_is_a_sitting_named_by_its_table_label(tmp_path):
    (sitting,) = inference_cost.sittings(c for c in expand(load_suite(_suite(tmp_path))) if c.strategy == "teacher")
    assert sitting.teacher == BackboneSpec.parse(TEACHER) and sitting.students == (BackboneSpec.parse(STUDENT),)
    assert not sitting.catalogue_cost and sitting.label == "ml-100k@leave-one-out"
    assert sitting.path(tmp_path) == tmp_path / "cost" / "ml-100k@leave-one-out" / "SASRec-16-L1H1.json"
    general = inference_cost.Sitting("ml-100k", BackboneSpec.parse("BPR:64"), ())
    assert general.label == "ml-100k" and general.path(tmp_path) == tmp_path / "cost" / "ml-100k" / "BPR-64.json"


def test_the_cost_command_measures_sequential_shapes_per_query_on_their_dataset_only(tmp_path, capsys):
    args = ["cost", "--suite", str(_suite(tmp_path)), "--catalogues", "10000", "--rounds", "3", "--warmup", "1",
            "--min-seconds", "0.01", "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0, capsys.readouterr().err
    costs = load_costs(tmp_path / "results")
    assert set(costs["catalogue"]) == {"ml-100k@leave-one-out"} and not costs["synthetic"].any()  # no synthetic
    assert list(dict.fromkeys(costs["model"])) == [TEACHER, STUDENT, "roofline:16", "roofline:8"]
    assert set(costs["batch_users"]) == {256, 1} and (costs["n"] >= 3).all()
    assert ((costs["q25_s"] <= costs["median_s"]) & (costs["median_s"] <= costs["q75_s"])).all()
    payload = json.loads((tmp_path / "results" / "cost" / "ml-100k@leave-one-out" / "SASRec-16-L1H1.json").read_text())
    assert inference_cost.check_cost(payload) is None and payload["dataset"] == "ml-100k@leave-one-out"


def _record(label: str, seed: int, throughput: float) -> dict:
    is_teacher = label == "teacher"
    return {
        "dataset": "ml-100k", "protocol": "leave-one-out", "teacher": TEACHER, "student": STUDENT,
        "pairing": f"{TEACHER}->{STUDENT}", "model": TEACHER if is_teacher else STUDENT, "strategy": label,
        "label": label, "seed": seed, "status": "ok", "created": "2025-01-01T10:00:00+00:00", "wall_seconds": 1.0,
        "family": "teacher" if is_teacher else "baseline" if label == "scratch" else "response",
        "test": {"ndcg@10": 0.1, "ndcg@20": 0.1, "recall@10": 0.1, "recall@20": 0.1},
        "per_user": {"user_ids": [1, 2], "ndcg@10": [0.1, 0.1]},
        "cost": {"params": 100, "size_bytes": 400, "throughput_users_per_s": throughput, "latency_p50_ms": 1.0},
        "training": {"best_epoch": 1, "epochs_run": 1, "hit_epoch_cap": False, "seconds_per_epoch": 1.0},
    }


def test_sequential_rows_read_the_per_shape_cost_and_fall_back_to_their_runs(tmp_path):
    store = RunStore(tmp_path)
    store.write("ml-100k", f"{TEACHER}->{STUDENT}", "teacher", 0, _record("teacher", 0, 1000.0), "leave-one-out")
    for label, figures in (("scratch", (30_000.0, 50_000.0)), ("kd", (26_000.0, 53_000.0))):
        for seed, value in enumerate(figures):
            store.write("ml-100k", f"{TEACHER}->{STUDENT}", label, seed, _record(label, seed, value), "leave-one-out")
    before = aggregate(load_runs(tmp_path), costs=load_costs(tmp_path)).set_index("strategy")
    assert before.loc["kd", "throughput_users_per_s"] == pytest.approx(39_500.0)  # each run's, median over seeds
    measured = [{"catalogue": "ml-100k@leave-one-out", "synthetic": False, "n_items": 1683, "n_users": 944,
                 "kind": "model", "model": model, "dim": dim, "params": 100, "batch_users": batch,
                 "median_s": median, "q25_s": median * 0.9, "q75_s": median * 1.1, "min_s": median * 0.8,
                 "max_s": median * 1.2, "n": 11}
                for model, dim, scale in ((TEACHER, 16, 2.0), (STUDENT, 8, 1.0))
                for batch, median in ((256, 0.008 * scale), (1, 0.0005 * scale))]
    path = tmp_path / "cost" / "ml-100k@leave-one-out" / "SASRec-16-L1H1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"kdbench_cost": 1, "dataset": "ml-100k@leave-one-out", "teacher": TEACHER,
                                "measurements": measured}))
    after = aggregate(load_runs(tmp_path), costs=load_costs(tmp_path)).set_index("strategy")
    for label in ("scratch", "kd"):  # one figure per shape, whatever the strategy
        assert after.loc[label, "throughput_users_per_s"] == pytest.approx(256 / 0.008)
        assert after.loc[label, "throughput_iqr_low"] == pytest.approx(256 / 0.0088)
        assert after.loc[label, "latency_p50_ms"] == pytest.approx(0.5)
