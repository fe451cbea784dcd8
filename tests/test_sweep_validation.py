"""The size sweep's rule reads validation NDCG@10, never test (kdbench.run.sweep)."""

from __future__ import annotations

import csv

import pytest

from kdbench.run.sweep import sweep_table, write_sweep
from kdbench.training.loop import TrainSettings

OLD_COLUMNS = ["model", "dim", "seeds", "params", "ndcg10_mean", "ndcg10_std", "recall10_mean", "best_epoch",
               "capped", "share_of_largest_%"]


def record(dim, seed, test, valid):
    return {"status": "ok", "student": f"BPR:{dim}", "seed": seed, "test": {"ndcg@10": test, "recall@10": test},
            "valid_ndcg@10": valid, "cost": {"params": dim}, "training": {"best_epoch": 3, "hit_epoch_cap": False}}


# Test says 64 keeps 60% of 200 (the band's middle) and 20 keeps 30%; validation says the opposite:
# 20 keeps 60% and 64 keeps 90%. The rule must follow validation.
RECORDS = [record(200, s, 0.50, 0.40) for s in (0, 1)] + [
    record(64, 0, 0.29, 0.35), record(64, 1, 0.31, 0.37),
    record(20, 0, 0.15, 0.23), record(20, 1, 0.15, 0.25),
    record(10, 0, 0.10, 0.21), record(10, 1, 0.10, 0.21)]


def test_the_size_rule_reads_validation_shares_not_test_shares():
    table = sweep_table(RECORDS).set_index("dim")
    assert table["valid_ndcg10_mean"].tolist() == pytest.approx([0.40, 0.36, 0.24, 0.21])
    assert table["valid_share_of_largest_%"].tolist() == pytest.approx([100.0, 90.0, 60.0, 52.5])
    assert table["share_of_largest_%"].tolist() == pytest.approx([100.0, 60.0, 30.0, 20.0])  # test, shown only
    assert table["in_size_rule"].tolist() == [False, False, True, True]
    assert table["suggested"].tolist() == [False, False, True, False]  # 60% is the band's middle


def test_the_csv_keeps_its_old_columns_first_and_the_header_states_the_rule(tmp_path):
    path = write_sweep(RECORDS, "toy", "BPR", [200, 64, 20, 10], [0, 1], TrainSettings(), tmp_path)
    with open(path.with_suffix(".csv")) as f:
        header = next(csv.reader(f))
    assert header[:len(OLD_COLUMNS)] == OLD_COLUMNS
    assert header[len(OLD_COLUMNS):] == ["valid_ndcg10_mean", "valid_ndcg10_std", "valid_share_of_largest_%",
                                         "in_size_rule", "suggested"]
    text = path.read_text()
    assert "Size rule (reads VALIDATION only; test is never used to choose)" in text
    assert "50-70% of the largest size's" in text and "Suggested pairing: BPR:200 -> BPR:20" in text


def test_no_size_in_the_band_says_so_and_records_without_validation_give_nan(tmp_path):
    records = [record(200, 0, 0.5, 0.4), record(64, 0, 0.45, 0.39)]
    del records[1]["valid_ndcg@10"]
    table = sweep_table(records)
    assert not table["suggested"].any() and table["valid_share_of_largest_%"].isna().tolist() == [False, True]
    path = write_sweep(records, "toy", "BPR", [200, 64], [0], TrainSettings(), tmp_path)
    assert "No size is in the band: extend `--dims`." in path.read_text()
