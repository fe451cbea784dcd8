"""Issue 31, class 5: `reproduce` on a damaged record names the damage in one line (exit 2) before
anything trains. The record is a committed run, copied and damaged; training is replaced by a
function that fails the test if it is ever called."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from conftest import run_cli
from test_malformed import assert_one_line_exit_2

import kdbench.run.runner
from kdbench.run.reproduce import check_reproducible

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "runs" / "ml-100k"


def _committed(label: str) -> dict:
    path = next(p for p in sorted(COMMITTED.glob(f"*/{label}/seed0.json"))
                if json.loads(p.read_text()).get("status") == "ok")
    return json.loads(path.read_text())


STUDENT, TEACHER_ROW = _committed("kd"), _committed("teacher")


def _without(*keys):
    def damage(record):
        target = record
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return damage


def _set(value, *keys):
    def damage(record):
        target = record
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return damage


def _set_first_user(metric, value):
    def damage(record):
        record["per_user"][metric][0] = value
    return damage


# id -> (damage, fragments of the one error line)
DAMAGES = {
    "no-training": (_without("training"), ["'training' is missing"]),
    "training-without-curve": (_without("training", "valid_curve"), ["'training'", "valid_curve"]),
    "no-per-user": (_without("per_user"), ["'per_user' is missing"]),
    "per-user-without-metric": (_without("per_user", "recall@20"), ["'per_user' lacks recall@20"]),
    "per-user-nan": (_set_first_user("ndcg@10", math.nan), ["'per_user.ndcg@10' holds nan"]),
    "test-metric-nan": (_set(math.nan, "test", "ndcg@10"), ["'test.ndcg@10' is nan, not a finite number"]),
    "test-metric-inf": (_set(math.inf, "test", "recall@10"), ["'test.recall@10' is inf"]),
    "test-metric-above-one": (_set(1.5, "test", "ndcg@10"), ["'test.ndcg@10' is 1.5, not a value in [0, 1]"]),
    "params-negative": (_set(-5, "cost", "params"), ["'cost.params' is -5, not a count of parameters"]),
    "test-metric-missing": (_without("test", "ndcg@20"), ["'test.ndcg@20' is missing"]),
    "teacher-test-nan": (_set(math.nan, "teacher_test", "ndcg@10"), ["'teacher_test.ndcg@10' is nan"]),
    "valid-ndcg-nan": (_set(math.nan, "valid_ndcg@10"), ["'valid_ndcg@10' is nan"]),
    "seed-negative": (_set(-1, "seed"), ["'seed' is -1"]),
    "teacher-seed-negative": (_set(-3, "config", "teacher_seed"), ["'config.teacher_seed' is -3"]),
    "config-not-a-mapping": (_set([1], "config"), ["'config' is not an object"]),  # the schema check
    "config-without-train": (_without("config", "train"), ["run.json lacks 'train'"]),  # the cell's rebuild
    "seed-not-an-integer": (_set("0", "seed"), ["'seed' is missing or not an integer"]),  # the schema check
    "status-unknown": (_set("done", "status"), ["'status' is 'done'"]),  # the schema check
    "no-test-metrics": (_without("test"), ["a finished run without 'test' metrics"]),  # the schema check
}


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a damaged record was run")
    monkeypatch.setattr(kdbench.run.runner.Runner, "run_all", refuse)


def _reproduce(capsys, tmp_path, record) -> tuple[int, str, str]:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(record))
    return run_cli(capsys, "reproduce", str(path), "--cache-dir", str(tmp_path / "cache"))


@pytest.mark.parametrize("damage, fragments", list(DAMAGES.values()), ids=list(DAMAGES))
def test_a_damaged_record_is_refused_in_one_line_before_anything_runs(capsys, tmp_path, no_training,
                                                                       damage, fragments):
    record = copy.deepcopy(STUDENT)
    damage(record)
    code, out, err = _reproduce(capsys, tmp_path, record)
    assert_one_line_exit_2(code, err, fragments)
    assert "run.json" in err and out == ""


def test_a_teacher_row_needs_no_teacher_metrics_but_its_own():
    assert check_reproducible(copy.deepcopy(TEACHER_ROW)) is None
    record = copy.deepcopy(TEACHER_ROW)
    record["test"]["ndcg@10"] = math.nan
    assert check_reproducible(record) == "'test.ndcg@10' is nan, not a finite number"


def test_the_committed_records_are_reproducible_and_a_failed_run_needs_only_its_config():
    assert check_reproducible(copy.deepcopy(STUDENT)) is None
    failed = {key: STUDENT[key] for key in ("dataset", "pairing", "label", "strategy", "seed", "config")}
    assert check_reproducible(failed | {"status": "failed", "error": "boom"}) is None


# Any damage to a finished run's compared sections: a key removed, or a value replaced by a
# non-finite number, a negative number, text or null.
_PATHS = [("training",), ("per_user",), ("test", "ndcg@10"), ("test", "recall@20"), ("teacher_test", "ndcg@20"),
          ("valid_ndcg@10",), ("seed",), ("config",), ("config", "train"), ("cost", "params")]
_BAD = st.sampled_from([math.nan, math.inf, -math.inf, -1, "x", None, [], {}])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(_PATHS), remove=st.booleans(), value=_BAD)
def test_any_damage_to_what_is_compared_is_exit_2_in_one_line(capsys, tmp_path, no_training, path, remove, value):
    assume(remove or path != ("config", "train") or value != {})  # empty settings: the defaults, no damage
    record = copy.deepcopy(STUDENT)
    (_without(*path) if remove else _set(value, *path))(record)
    code, _, err = _reproduce(capsys, tmp_path, record)
    assert_one_line_exit_2(code, err, [])
    assert "run.json" in err.strip().splitlines()[-1]
