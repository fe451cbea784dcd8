"""The run record: its address, its identity pinned against committed runs, and its schema."""

from __future__ import annotations

import json
from pathlib import Path

from kdbench.run.cells import cell_from_record
from kdbench.store.checkpoints import cache_key
from kdbench.run.record import (FLAT_FIELDS, SEED_DETERMINED_FIELDS, Address, RunRecord, RunStore, check_record,
                            identity, teacher_identity)

COMMITTED = Path(__file__).resolve().parent.parent / "results" / "runs"
# Scratch rows: their identity holds no distillation code, so speeding up or fixing a strategy
# (which rightly makes that strategy's runs stale) leaves them current.
GENERAL_RUN = COMMITTED / "ml-100k" / "BPR-64_to_BPR-10" / "scratch" / "seed0.json"
SEQUENTIAL_RUN = COMMITTED / "ml-100k@leave-one-out" / "SASRec-64-L1H1_to_GRU4Rec-16" / "scratch" / "seed0.json"
# What the code gave these committed runs when they were made: the split's fingerprint (as the
# bundled ml-100k loads under `random` and `leave-one-out`) and the teacher cache key. A change to
# any of them makes every committed run and cached teacher stale.
ML100K_RANDOM_FINGERPRINT = "ff86aeb4a1a20919"
ML100K_LEAVE_ONE_OUT_FINGERPRINT = "c39c43d818dd59b9"
BPR_TEACHER_KEY = "21dc33c23f690bb1e4d8"
SASREC_TEACHER_KEY = "9ba401202c7918980bc2"


def _stored(path: Path) -> dict:
    return json.loads(path.read_text())


def test_a_committed_general_run_keeps_its_identity_and_its_teacher_key(ml100k):
    record = _stored(GENERAL_RUN)
    cell = cell_from_record(record, str(GENERAL_RUN))
    assert json.loads(json.dumps(identity(cell, record["config"]["device"]))) == record["config"]
    assert ml100k.fingerprint == ML100K_RANDOM_FINGERPRINT
    assert cache_key(teacher_identity(cell, ML100K_RANDOM_FINGERPRINT)) == BPR_TEACHER_KEY
    assert RunStore(COMMITTED.parent).file(cell.address) == GENERAL_RUN


def test_a_committed_sequential_run_keeps_its_identity_and_its_teacher_key():
    record = _stored(SEQUENTIAL_RUN)
    cell = cell_from_record(record, str(SEQUENTIAL_RUN))
    assert json.loads(json.dumps(identity(cell, record["config"]["device"]))) == record["config"]
    assert teacher_identity(cell, ML100K_LEAVE_ONE_OUT_FINGERPRINT)["model_config"] == {
        "hidden_size": 64, "inner_size": 256, "n_layers": 1, "n_heads": 1}
    assert cache_key(teacher_identity(cell, ML100K_LEAVE_ONE_OUT_FINGERPRINT)) == SASREC_TEACHER_KEY
    assert RunStore(COMMITTED.parent).file(cell.address) == SEQUENTIAL_RUN


def test_an_address_is_read_from_a_record_and_names_its_file(tmp_path):
    record = {"dataset": "cite", "pairing": "BPR:400->BPR:20", "label": "rrd@K=20", "seed": 3,
              "protocol": "ordered", "strategy": "rrd", "status": "failed"}
    address = Address.of(record)
    assert address == Address("cite", "BPR:400->BPR:20", "rrd@K=20", 3, "ordered")
    store = RunStore(tmp_path)
    assert store.file(address) == tmp_path / "runs/cite@ordered/BPR-400_to_BPR-20/rrd@K=20/seed3.json"
    store.put(address, record, log="cell failed\n")
    assert store.find(address) == record and store.file(address).with_suffix(".log").read_text() == "cell failed\n"
    # a record without a protocol was made under `random`, which the folder name leaves out
    legacy = Address.of({**record, "protocol": None})
    assert legacy.relative_path() == Path("cite/BPR-400_to_BPR-20/rrd@K=20/seed3.json")


def test_the_schema_holds_every_field_the_readers_and_the_runner_use():
    fields = RunRecord.__annotations__
    assert "data_fingerprint" in fields
    assert {section for section, _ in FLAT_FIELDS.values()} <= set(fields)
    assert {dotted.split(".")[0] for dotted in SEED_DETERMINED_FIELDS} <= set(fields)
    assert check_record({"dataset": "d", "pairing": "p", "label": "l", "strategy": "s", "seed": 0,
                         "status": "ok", "cost": {"params": "many"}, "test": {}}) == \
        "'cost.params' is 'many', not a number"


def test_the_beyond_and_test_user_blocks_are_optional_and_checked():
    base = {"dataset": "d", "pairing": "p", "label": "l", "strategy": "s", "seed": 0, "status": "ok",
            "test": {}, "per_user": {"user_ids": [3, 1], "ndcg@10": [0.5, 0.0]}}
    assert check_record(base) is None  # a record from before issue 27
    assert check_record(_stored(GENERAL_RUN)) is None
    new = base | {"beyond": {"giniindex@10": 0.9, "tail_ratio": 0.8}, "test_users": {"train_interactions": [40, 7]}}
    assert check_record(new) is None
    assert check_record(new | {"beyond": {"giniindex@10": "high"}}) == "'beyond.giniindex@10' is 'high', not a number"
    assert "different lengths" in check_record(new | {"test_users": {"train_interactions": [40]}})
    assert "not a list of counts" in check_record(new | {"test_users": {"train_interactions": [40, -1]}})
    assert "not a list of counts" in check_record(new | {"test_users": {"train_interactions": [40, 1.5]}})
    assert "not a list of counts" in check_record(new | {"test_users": {"train_interactions": [40, True]}})
    # JSON's true is no number; null is (a user a metric is undefined for)
    assert check_record(base | {"per_user": {"user_ids": [3, 1], "ndcg@10": [0.5, True]}}) == \
        "'per_user.ndcg@10' is not a list of numbers"
    assert check_record(base | {"per_user": {"user_ids": [3, 1], "ndcg@10": [0.5, "0.1"]}}) == \
        "'per_user.ndcg@10' is not a list of numbers"
    assert check_record(base | {"per_user": {"user_ids": [3, 1], "ndcg@10": [0.5, None]}}) is None


def test_the_seed_determined_validation_field_is_named_from_the_primary_metric():
    from kdbench.evaluation.metrics import PRIMARY_METRIC
    from kdbench.run.record import SEED_DETERMINED_FIELDS

    assert f"valid_{PRIMARY_METRIC}" in SEED_DETERMINED_FIELDS
    assert SEED_DETERMINED_FIELDS[2] == "valid_ndcg@10"
