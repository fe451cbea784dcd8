"""`kdbench reproduce RUN.json`: a stored run, run again from its record, gives the same metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from kdbench.run.cells import Cell, cell_from_record
from kdbench.families import BackboneSpec
from kdbench.run.record import RECORD_FORMAT, cpu_model, identity
from kdbench.run.reproduce import CROSS_CPU_TOLERANCE, Reproduction
from kdbench.run.runner import Runner
from kdbench.training.loop import TrainSettings

COMMITTED = Path(__file__).resolve().parents[1] / "results"
SMALL = TrainSettings(max_epochs=2, batch_size=4096)


@pytest.fixture(scope="module")
def stored_run(toy_dir, tmp_path_factory):
    """A kd run on the toy data, stored as `run` stores it: (its file, the teacher cache)."""
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "kd", seed=1,
                hparams=(("tau", "2"),), train=SMALL, teacher_train=TrainSettings(max_epochs=3, batch_size=4096),
                data_path=str(toy_dir))
    results, cache = tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("cache")
    runner = Runner(results, cache)
    assert runner.run(cell)["status"] == "ok"
    return runner.store.path(cell.dataset, cell.pairing, cell.label, cell.seed), cache


def test_a_record_rebuilds_the_cell_it_was_made_from(stored_run):
    path, _ = stored_run
    record = json.loads(path.read_text())
    cell = cell_from_record(record)
    assert (cell.label, cell.seed, cell.train, cell.teacher_settings.max_epochs) == ("kd@tau=2", 1, SMALL, 3)
    assert json.loads(json.dumps(identity(cell, "cpu"))) == record["config"]


def test_a_run_made_here_reproduces_identically_with_the_cached_teacher(capsys, stored_run):
    path, cache = stored_run
    before = path.read_bytes()
    code, out, _ = run_cli(capsys, "reproduce", str(path), "--cache-dir", str(cache))
    assert code == 0, out
    assert "identical: ndcg@10" in out
    assert "loaded from the cache" in out and "max epochs 3" in out
    assert path.read_bytes() == before  # the stored run is never touched


def test_a_changed_metric_is_reported_as_a_difference_with_exit_1(capsys, stored_run, tmp_path):
    path, cache = stored_run
    record = json.loads(path.read_text())
    record["test"]["ndcg@10"] = 0.999
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(record))
    code, out, _ = run_cli(capsys, "reproduce", str(edited), "--cache-dir", str(cache))
    assert code == 1
    assert "DIFFERENT in 1 value(s):" in out
    assert "test.ndcg@10: stored 0.999, reproduced" in out


@pytest.mark.slow
def test_a_run_made_here_reproduces_identically_with_the_teacher_trained_again(capsys, stored_run):
    path, _ = stored_run
    code, out, _ = run_cli(capsys, "reproduce", str(path), "--retrain-teacher")
    assert code == 0, out
    assert "trained now" in out and "identical:" in out


def _committed_run() -> Path | None:
    """The cheapest committed ml-100k run in the current record format (teacher rows first)."""
    found = []
    for path in sorted((COMMITTED / "runs" / "ml-100k").glob("*/*/seed*.json")):
        record = json.loads(path.read_text())
        if record.get("kdbench_run") != RECORD_FORMAT or record.get("status") != "ok":
            continue
        training = record.get("training") or {}
        cost = training.get("epochs_run", 1e9) * training.get("seconds_per_epoch", 1e9)
        found.append((record["strategy"] != "teacher", cost, str(path)))
    return Path(min(found)[2]) if found else None


@pytest.mark.slow
@pytest.mark.skipif(_committed_run() is None,
                    reason=f"no ml-100k run in record format {RECORD_FORMAT} under {COMMITTED / 'runs'} yet "
                           "(the committed results are being regenerated)")
def test_a_committed_ml100k_run_reproduces_bit_for_bit(capsys, tmp_path):
    path = _committed_run()
    code, out, _ = run_cli(capsys, "reproduce", str(path), "--retrain-teacher")
    assert code == 0, out
    made_on = json.loads(path.read_text())["environment"]["cpu"]
    if made_on == cpu_model():
        assert "identical:" in out
    else:  # other float kernels: equal within the stated tolerance, and the output says why
        assert "within tolerance: made on " + made_on in out


def _reproduction(stored_cpu: str, stored_ndcg: float, reproduced_ndcg: float) -> Reproduction:
    stored = {"status": "ok", "environment": {"cpu": stored_cpu}, "test": {"ndcg@10": stored_ndcg}}
    reproduced = {"status": "ok", "environment": {"cpu": cpu_model()}, "test": {"ndcg@10": reproduced_ndcg}}
    return Reproduction(cell=None, stored=stored, reproduced=reproduced, stale=[], teacher_source="",
                        differences=["test.ndcg@10: differs"] if stored_ndcg != reproduced_ndcg else [])


def test_a_difference_on_the_same_cpu_model_is_never_excused():
    result = _reproduction(cpu_model(), 0.3, 0.3 * (1 + CROSS_CPU_TOLERANCE / 10))
    assert not result.identical and not result.other_cpu and not result.equivalent


def test_another_cpu_model_is_equivalent_within_the_tolerance_and_different_beyond_it():
    within = _reproduction("Some Other CPU", 0.3, 0.3 * (1 + CROSS_CPU_TOLERANCE / 2))
    assert within.equivalent and within.largest_test_difference == pytest.approx(CROSS_CPU_TOLERANCE / 2)
    beyond = _reproduction("Some Other CPU", 0.3, 0.3 * (1 + 2 * CROSS_CPU_TOLERANCE))
    assert not beyond.equivalent
