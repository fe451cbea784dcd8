"""results/reproduction.md and .csv from synthetic run records: values, differences, ordering."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from kdbench.cli import main
from kdbench.errors import KdbenchError
from kdbench.commands.reproduce import check_paper
from kdbench.run.record import RunStore
from kdbench.report.reproduction import (load_reproductions, reproduction_folder, reproduction_table,
                                         write_paper, write_reproduction_report)
from kdbench.run.suites import Suite

PAPER = {"title": "Toy paper, Table 2", "protocol": "ordered-mask-train", "metrics": ["recall@10", "ndcg@10"],
         "rows": {"teacher": {"recall@10": 0.04, "ndcg@10": 0.02}, "scratch": {"recall@10": 0.02, "ndcg@10": 0.008},
                  "cd": {"recall@10": 0.025, "ndcg@10": 0.012}, "rce-kd": None}}
# (protocol, method, seed) -> (recall@10, ndcg@10)
RUNS = {
    ("ordered-mask-train", "teacher", 0): (0.042, 0.021),
    ("ordered-mask-train", "scratch", 0): (0.019, 0.009), ("ordered-mask-train", "scratch", 1): (0.021, 0.011),
    ("ordered-mask-train", "cd", 0): (0.024, 0.012), ("ordered-mask-train", "cd", 1): (0.026, 0.014),
    ("ordered-mask-train", "rce-kd", 0): (0.03, 0.015),
    ("random", "teacher", 0): (0.1, 0.06),
    ("random", "scratch", 0): (0.09, 0.05), ("random", "scratch", 1): (0.09, 0.054),
    ("random", "cd", 0): (0.08, 0.049), ("random", "cd", 1): (0.08, 0.047),
}


def _record(protocol, method, seed, recall, ndcg):
    pairing = "BPR:400->BPR:20"
    record = {"kdbench_run": 2, "status": "ok", "dataset": "cite", "pairing": pairing, "teacher": "BPR:400",
              "student": "BPR:20", "strategy": method, "label": method, "seed": seed, "protocol": protocol,
              "wall_seconds": 1800.0, "test": {"recall@10": recall, "ndcg@10": ndcg, "recall@20": 0.0, "ndcg@20": 0.0}}
    if protocol == "random":
        del record["protocol"]  # a record without the field is read as random
    return record


def _store(results_dir, failed: bool = False):
    folder = reproduction_folder(results_dir, "toy-repro")
    store = RunStore(folder)
    for (protocol, method, seed), (recall, ndcg) in RUNS.items():
        store.write("cite", "BPR:400->BPR:20", method, seed, _record(protocol, method, seed, recall, ndcg), protocol)
    if failed:
        store.write("cite", "BPR:400->BPR:20", "cd", 2, {**_record("ordered-mask-train", "cd", 2, 0, 0),
                                                         "status": "failed", "test": {}}, "ordered-mask-train")
    write_paper(folder, "toy-repro", PAPER)
    return folder


def _cell(table, method, metric, protocol):
    found = table[(table["method"] == method) & (table["metric"] == metric) & (table["protocol"] == protocol)]
    assert len(found) == 1
    return found.iloc[0]


def test_the_table_holds_paper_mean_std_and_relative_difference(tmp_path):
    _store(tmp_path, failed=True)
    (paper, runs), = load_reproductions(tmp_path)
    table = reproduction_table(paper, runs)
    scratch = _cell(table, "scratch", "ndcg@10", "ordered-mask-train")
    assert scratch["paper"] == 0.008
    assert scratch["mean"] == pytest.approx(0.010)
    assert scratch["std"] == pytest.approx(math.sqrt(2 * 0.001 ** 2))     # sample std of 0.009, 0.011
    assert scratch["rel_diff_pct"] == pytest.approx(25.0)                 # (0.010 - 0.008) / 0.008
    cd = _cell(table, "cd", "recall@10", "ordered-mask-train")
    assert (cd["mean"], cd["n_seeds"], cd["rel_diff_pct"]) == (pytest.approx(0.025), 2, pytest.approx(0.0))
    teacher = _cell(table, "teacher", "recall@10", "ordered-mask-train")
    assert teacher["n_seeds"] == 1 and math.isnan(teacher["std"]) and teacher["rel_diff_pct"] == pytest.approx(5.0)
    beside = _cell(table, "scratch", "ndcg@10", "random")
    assert beside["mean"] == pytest.approx(0.052) and beside["rel_diff_pct"] == pytest.approx(550.0)
    rce = _cell(table, "rce-kd", "ndcg@10", "ordered-mask-train")
    assert math.isnan(rce["paper"]) and rce["mean"] == pytest.approx(0.015) and math.isnan(rce["rel_diff_pct"])
    assert _cell(table, "rce-kd", "ndcg@10", "random")["n_seeds"] == 0
    # the paper's rows in order, its protocol first
    assert list(dict.fromkeys(table["method"])) == ["teacher", "scratch", "cd", "rce-kd"]
    assert list(dict.fromkeys(table["protocol"])) == ["ordered-mask-train", "random"]


def test_report_writes_the_markdown_and_csv_deterministically(tmp_path, capsys):
    _store(tmp_path)
    assert main(["report", "--results-dir", str(tmp_path)]) == 0
    md, csv = (tmp_path / "reproduction.md").read_text(), (tmp_path / "reproduction.csv").read_text()
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in md.splitlines() if line.startswith("| "))}
    assert rows["**scratch**"] == ["2", "0.0200", "0.0200 ± 0.0014", "+0.0%", "0.0080", "0.0100 ± 0.0014", "+25.0%",
                                   "2", "0.0900 ± 0.0000", "0.0520 ± 0.0028"]
    assert rows["rce-kd"] == ["1", "—", "0.0300", "—", "—", "0.0150", "—", "0", "—", "—"]  # each protocol its seeds
    assert "- paper, NDCG@10: cd > scratch" in md
    assert "- kdbench `ordered-mask-train`, NDCG@10: cd > scratch (scratch below every distilled method, as in the paper)" in md
    assert "- kdbench `random`, NDCG@10: scratch > cd (scratch NOT below cd)" in md
    assert "`ordered-mask-train` 3.00 h, `random` 2.50 h" in md
    frame = pd.read_csv(tmp_path / "reproduction.csv")
    assert len(frame) == 4 * 2 * 2  # methods x metrics x protocols
    assert main(["report", "--results-dir", str(tmp_path)]) == 0
    assert (tmp_path / "reproduction.md").read_text() == md and (tmp_path / "reproduction.csv").read_text() == csv


def test_verify_checks_the_reproduction_files(tmp_path, capsys):
    _store(tmp_path)
    write_reproduction_report(tmp_path)
    assert main(["verify", "--results-dir", str(tmp_path)]) == 0
    path = tmp_path / "reproduction.md"
    path.write_text(path.read_text().replace("+25.0%", "+5.0%"))
    assert main(["verify", "--results-dir", str(tmp_path)]) == 1
    assert "reproduction.md differs from what `report` writes now" in capsys.readouterr().out


def _suite(paper):
    spec = {"name": "s", "datasets": ["ml-100k"], "seeds": [0], "strategies": ["scratch", "cd"],
            "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}], "protocol": ["ordered-mask-train", "random"],
            "paper": paper}
    return Suite("s", spec)


def test_the_bundled_reproduction_suites_paper_block_is_valid():
    from kdbench.run.suites import expand, load_suite

    suite = load_suite("kdbench/suites/reproduce-rcekd-citeulike.yaml")
    paper = check_paper(suite)
    assert paper["protocol"] == "ordered-mask-train" and paper["rows"]["dcd"] == {"recall@10": 0.0254, "ndcg@10": 0.0136}
    cells = expand(suite)
    assert {c.protocol for c in cells} == {"ordered-mask-train", "random"}
    assert len(cells) == 2 * (1 + 6 * 5)
    decay = {c.strategy: c.train.weight_decay for c in cells}
    assert decay == {"teacher": 1e-3 / 2048, "scratch": 1e-3 / 2048, "cd": 1e-8 / 2048, "cd-student-guided": 1e-8 / 2048,
                     "rrd": 1e-5 / 2048, "dcd": 1e-5 / 2048, "rce-kd": 1e-5 / 2048}
    # the paper's CD is the reference's student-guided configuration; kdbench's teacher-guided cd has no published value
    assert paper["rows"]["cd"] is None and paper["rows"]["cd-student-guided"] == {"recall@10": 0.0239, "ndcg@10": 0.0131}
    assert {c.train.init_std for c in cells} == {0.01}


@pytest.mark.parametrize("paper, message", [
    (None, "'paper' is missing"),
    ({**PAPER, "protocol": "ordered"}, "'protocol' must be one of the suite's protocols"),
    ({**PAPER, "rows": {"rrd": {"ndcg@10": 0.01}}}, "row 'rrd' is not run by the suite"),
    ({**PAPER, "rows": {"cd": {"ndcg@5": 0.01}}}, "row 'cd' must map metrics"),
    ({**PAPER, "metrics": ["map@10"]}, "'metrics' must be a list of"),
], ids=["missing", "protocol", "row", "metric-in-row", "metric"])
def test_a_malformed_paper_block_is_refused(paper, message):
    paper = paper if paper is None else {**paper, "rows": {k: v for k, v in paper["rows"].items() if k != "rce-kd"}}
    with pytest.raises(KdbenchError, match=message):
        check_paper(_suite(paper))


def test_reproduce_suite_runs_the_cells_and_writes_the_comparison(tmp_path, toy_dir, capsys):
    import yaml

    suite = tmp_path / "toy-repro.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "toy-repro", "datasets": ["toy"], "data_path": "elsewhere", "seeds": [0], "strategies": ["scratch"],
        "protocol": ["ordered-mask-train", "random"],
        "train": {"max_epochs": 2, "batch_size": 4096, "init_std": 0.01},
        "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
        "paper": {"title": "Toy", "protocol": "ordered-mask-train", "metrics": ["ndcg@10"],
                  "rows": {"teacher": {"ndcg@10": 0.5}, "scratch": {"ndcg@10": 0.25}}},
    }))
    args = ["reproduce", "--suite", str(suite), "--data-path", str(toy_dir), "--results-dir", str(tmp_path / "r"),
            "--cache-dir", str(tmp_path / "c"), "--workers", "1"]
    assert main(args) == 0
    runs = tmp_path / "r" / "reproduction" / "toy-repro" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["toy", "toy@ordered-mask-train"]
    table = pd.read_csv(tmp_path / "r" / "reproduction.csv")
    assert list(table["protocol"]) == ["ordered-mask-train", "random"] * 2
    assert (table["n_seeds"] == 1).all() and table["mean"].notna().all()
    md = (tmp_path / "r" / "reproduction.md").read_text()
    assert main(["verify", "--results-dir", str(tmp_path / "r")]) == 0
    assert main(args) == 0  # every cell done: nothing runs, the same files
    assert (tmp_path / "r" / "reproduction.md").read_text() == md


def test_a_reproduction_cut_off_part_way_still_reports_the_cells_it_finished(tmp_path, toy_dir, monkeypatch):
    import yaml

    import kdbench.run.runner

    suite = tmp_path / "toy-cut.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "toy-cut", "datasets": ["toy"], "seeds": [0], "strategies": ["scratch"], "protocol": "ordered",
        "train": {"max_epochs": 1, "batch_size": 4096},
        "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
        "paper": {"title": "Toy", "protocol": "ordered", "metrics": ["ndcg@10"],
                  "rows": {"teacher": {"ndcg@10": 0.5}, "scratch": {"ndcg@10": 0.25}}},
    }))
    args = ["reproduce", "--suite", str(suite), "--data-path", str(toy_dir), "--results-dir", str(tmp_path / "r"),
            "--cache-dir", str(tmp_path / "c"), "--workers", "1"]

    def interrupted(runner, cells):
        raise KeyboardInterrupt  # the driver killed before any cell finished

    monkeypatch.setattr(kdbench.run.runner, "run_cells", interrupted)
    assert main(args) == 130  # "interrupted; finished cells are kept, rerun to resume"
    folder = tmp_path / "r" / "reproduction" / "toy-cut"
    assert json.loads((folder / "paper.json").read_text())["rows"]["scratch"] == {"ndcg@10": 0.25}
    assert not (folder / "runs").exists() or not list((folder / "runs").rglob("*.json"))
