"""The leaderboard's beyond-accuracy table (kdbench.report.beyond_table) on constructed runs."""

from __future__ import annotations

import csv

import pytest

from kdbench.run.record import RunStore
from kdbench.report import write_reports
from kdbench.report.beyond_table import BEYOND_LEGEND
from tests.test_report import PAIRING, record


def _beyond(coverage, popularity, tail, gini):
    return {"beyond": {"itemcoverage@10": coverage, "averagepopularity@10": popularity,
                       "tailpercentage@10": tail, "giniindex@10": gini, "tail_ratio": 0.8}}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("beyond")
    store = RunStore(root / "results")
    store.write("toy", PAIRING, "teacher", 0, record("teacher", 0, 0.40) | _beyond(0.10, 200.0, 0.02, 0.95))
    for seed, (popularity, tail) in enumerate([(240.0, 0.01), (260.0, 0.03)]):
        store.write("toy", PAIRING, "scratch", seed, record("scratch", seed, 0.20 + seed / 100)
                    | _beyond(0.05, popularity, tail, 0.97))
        store.write("toy", PAIRING, "unkd", seed, record("unkd", seed, 0.25 + seed / 100)
                    | _beyond(0.20, 150.0, 0.10 + seed / 10, 0.90))
    store.write("toy", PAIRING, "kd", 0, record("kd", 0, 0.30))  # made before the metrics were recorded
    # a dataset of old records only: no beyond table
    store.write("old", PAIRING, "teacher", 0, record("teacher", 0, 0.40, dataset="old"))
    store.write("old", PAIRING, "scratch", 0, record("scratch", 0, 0.20, dataset="old"))
    out = root / "out"
    write_reports(root / "results", out, plot=False)
    return out


def _table(text: str, dataset: str) -> list[list[str]]:
    section = text.split(f"## {dataset}:")[1].split("\n## ")[0]
    if "Beyond accuracy" not in section:
        return []
    block = section.split("Beyond accuracy")[1].split("\n\n")[1]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in block.splitlines()[2:]]


def test_the_beyond_table_has_teacher_first_then_scratch_then_strategies(report):
    rows = _table((report / "leaderboard.md").read_text(), "toy")
    # the strategies in the quality table's order: kd (0.30) before unkd (0.255)
    assert [row[0] for row in rows] == ["**teacher (BPR:64)**", "**scratch**", "kd", "unkd"]
    by = {row[0]: row for row in rows}
    assert by["**teacher (BPR:64)**"][1:] == ["10.0%", "200.0", "—", "2.0%", "0.950"]
    # scratch: means over two seeds; popularity 250 is +25% over the teacher's 200
    assert by["**scratch**"][1:] == ["5.0%", "250.0", "+25.0%", "2.0%", "0.970"]
    assert by["unkd"][1:] == ["20.0%", "150.0", "-25.0%", "15.0%", "0.900"]
    assert by["kd"][1:] == ["—", "—", "—", "—", "—"]  # a run from before the metrics


def test_the_legend_states_the_tail_and_old_tables_have_no_block(report):
    text = (report / "leaderboard.md").read_text()
    assert BEYOND_LEGEND in text and "least popular 80%" in text and "UnKD" in BEYOND_LEGEND
    assert _table(text, "old") == []
    assert "tail: the least popular 80% of items" in text.split("## toy:")[1]


def test_the_beyond_columns_are_in_the_csv(report):
    rows = {(r["dataset"], r["strategy"]): r for r in csv.DictReader(open(report / "leaderboard.csv", newline=""))}
    assert float(rows["toy", "scratch"]["averagepopularity@10_mean"]) == pytest.approx(250.0)
    assert float(rows["toy", "unkd"]["tailpercentage@10_mean"]) == pytest.approx(0.15)
    assert rows["toy", "kd"]["giniindex@10_mean"] == ""


def test_a_report_of_old_records_has_no_beyond_legend(tmp_path):
    store = RunStore(tmp_path / "results")
    store.write("old", PAIRING, "teacher", 0, record("teacher", 0, 0.40, dataset="old"))
    store.write("old", PAIRING, "scratch", 0, record("scratch", 0, 0.2, dataset="old"))
    write_reports(tmp_path / "results", tmp_path / "out", plot=False)
    text = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Beyond accuracy" not in text and BEYOND_LEGEND not in text
