"""`sweep-data` (kdbench.report.data_share, kdbench.commands.data_share): the table from constructed records,
the choice of the tuned top three, and a tiny end-to-end run that writes the table and the curve."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from kdbench.run.cells import Cell
from kdbench.cli.main import main
from kdbench.commands.data_share import _finished_studies, _intro, _top_tuned
from kdbench.report.data_share import data_share_table, markdown
from kdbench.errors import KdbenchError
from kdbench.families import BackboneSpec
from kdbench.run.record import safe_name
from kdbench.strategies import STRATEGIES
from kdbench.commands.verify import verify

REPO = Path(__file__).resolve().parents[1]


def _record(strategy: str, seed: int, ndcg: float) -> dict:
    return {"status": "ok", "strategy": strategy, "seed": seed, "variant": "defaults",
            "test": {"ndcg@10": ndcg, "recall@10": ndcg * 2}, "training": {"best_epoch": 3}}


def test_table_compares_each_share_with_its_own_scratch():
    records = {
        0.25: [_record("teacher", 0, 0.20), _record("scratch", 0, 0.10), _record("scratch", 1, 0.12),
               _record("kd", 0, 0.13), _record("kd", 1, 0.15)],
        1.0: [_record("teacher", 0, 0.40), _record("scratch", 0, 0.30), _record("kd", 0, 0.33),
              {"status": "failed", "strategy": "kd", "seed": 1}],
    }
    table = data_share_table(records).set_index(["strategy", "share"])
    assert table.loc[("kd", 0.25), "ndcg@10_mean"] == pytest.approx(0.14)
    assert table.loc[("kd", 0.25), "ndcg@10_std"] == pytest.approx(0.0141421356)
    assert table.loc[("kd", 0.25), "ndcg@10_vs_scratch_pct"] == pytest.approx((0.14 - 0.11) / 0.11 * 100)
    assert table.loc[("kd", 1.0), "ndcg@10_vs_scratch_pct"] == pytest.approx(10.0)
    assert table.loc[("kd", 1.0), "n_seeds"] == 1  # the failed seed is not averaged
    assert table.loc[("kd", 1.0), "teacher_ndcg@10_retained_pct"] == pytest.approx(82.5)
    assert list(dict.fromkeys(table.index.get_level_values(0))) == ["teacher", "scratch", "kd"]
    page = markdown(data_share_table(records), "t", "intro")
    kd_line = next(line for line in page.splitlines() if line.startswith("| kd"))
    assert "0.1400 ± 0.0141 (+27.3%), 2 seeds" in kd_line and "0.3300 (+10.0%), 1 seed" in kd_line
    assert "25% of training data" in page and "100% of training data" in page


def test_a_strategy_missing_at_a_share_shows_a_dash():
    records = {0.5: [_record("scratch", 0, 0.1), _record("kd", 0, 0.2)], 1.0: [_record("scratch", 0, 0.3)]}
    kd_line = next(line for line in markdown(data_share_table(records), "t", "").splitlines() if line.startswith("| kd"))
    assert kd_line.rstrip(" |").endswith("—")


def _study(root: Path, pairing: str, strategy: str, value: float, code: str | None = None) -> None:
    folder = root / "tuning" / "ml-100k" / safe_name(pairing)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"dataset": "ml-100k", "pairing": pairing, "strategy": strategy, "best_trial": 1, "trials_counted": 4,
               "budget": 4, "finished": True, "best_hparams": {}, "best_training": {"learning_rate": 0.01},
               "identity": {"strategy_code": code or STRATEGIES.get(strategy).code_version(), "fixed_hparams": {}},
               "best_valid_ndcg@10": value}
    (folder / f"{strategy}.json").write_text(json.dumps(summary))


def test_the_top_three_are_the_best_current_studies_on_validation(tmp_path):
    pairing = "BPR:8->BPR:4"
    for strategy, value in (("scratch", 0.9), ("kd", 0.20), ("rrd", 0.25), ("cd", 0.22), ("fitnet", 0.10),
                            ("svd-ft", 0.95)):  # a compression baseline's study: never a candidate
        _study(tmp_path, pairing, strategy, value)
    _study(tmp_path, pairing, "dcd", 0.30, code="other code")  # tuned with other strategy code: not usable
    _study(tmp_path, pairing, "teacher", 0.99, code="the teacher's")  # the pairing's teacher study: not a candidate
    template = Cell("ml-100k", BackboneSpec.parse("BPR:8"), BackboneSpec.parse("BPR:4"), "scratch", 0)
    assert _top_tuned(_finished_studies(template, tmp_path), template) == ["rrd", "cd", "kd"]
    students = [replace(template, strategy=name) for name in ("scratch", "rrd", "cd", "kd")]
    intro = _intro("", template, students, [1.0], [0], 0, "tuned", sorted(_finished_studies(template, tmp_path)))
    assert "Students: scratch, rrd, cd, kd: " in intro  # dcd's study is another code's: not among them
    assert "chosen among the 4 finished studies of this pairing: cd, fitnet, kd, rrd)" in intro
    (tmp_path / "tuning" / "ml-100k" / safe_name(pairing) / "cd.json").unlink()
    (tmp_path / "tuning" / "ml-100k" / safe_name(pairing) / "kd.json").unlink()
    with pytest.raises(KdbenchError, match="--strategy"):
        _top_tuned(_finished_studies(template, tmp_path), template)


def test_sweep_data_writes_the_table_and_the_curve_and_resumes(tmp_path, capsys):
    results, cache = tmp_path / "results", tmp_path / "cache"
    argv = ["sweep-data", "--teacher", "BPR:8", "--student", "BPR:4", "--shares", "0.5,1", "--seeds", "0",
            "--strategy", "kd", "--variant", "defaults", "--epochs", "2", "--patience", "1", "--workers", "1",
            "--results-dir", str(results), "--cache-dir", str(cache)]
    assert main(argv) == 0
    stem = results / "data_share_ml-100k_BPR-8_to_BPR-4"
    rows = list(csv.DictReader(open(stem.with_suffix(".csv"), newline="")))
    assert {(r["strategy"], r["share"]) for r in rows} == {(s, x) for s in ("teacher", "scratch", "kd")
                                                           for x in ("0.5", "1")}
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = stem.with_suffix(".md").read_text()
    assert "50% of training data" in page and "round-half-up" in page
    half = results / "data_share" / "share-0.5" / "runs" / "ml-100k" / "BPR-8_to_BPR-4"
    full = results / "data_share" / "share-1" / "runs" / "ml-100k" / "BPR-8_to_BPR-4"
    kd_half, kd_full = json.loads((half / "kd/seed0.json").read_text()), json.loads((full / "kd/seed0.json").read_text())
    assert kd_half["config"]["data_share"] == {"share": 0.5, "seed": 0} and "data_share" not in kd_full["config"]
    assert kd_half["data_fingerprint"] != kd_full["data_fingerprint"]
    # the teacher of a share is trained on it: two teachers in the cache
    assert len(list((cache / "teachers").iterdir())) == 2
    found = verify(results)  # the share cells' identities are what the current code gives them
    assert (found.runs, found.stale, found.errors) == (6, [], [])
    before = {path: path.read_bytes() for path in results.rglob("seed*.json")}
    capsys.readouterr()
    assert main(argv) == 0  # every cell finished: nothing trains, nothing is rewritten
    assert {path: path.read_bytes() for path in results.rglob("seed*.json")} == before
    assert "training teacher" not in capsys.readouterr().err
    # the whole split's cells are the run store's: found there (as `run` leaves them), copied, not retrained
    shutil.move(results / "data_share" / "share-1" / "runs", results / "runs")
    assert main(argv) == 0
    assert json.loads((full / "kd/seed0.json").read_text()) == kd_full
    assert "training teacher" not in capsys.readouterr().err


def test_sequential_pairings_and_bad_shares_are_refused_in_one_line(tmp_path, capsys):
    common = ["--strategy", "kd", "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "c")]
    assert main(["sweep-data", "--teacher", "SASRec:16:L1H1", "--student", "SASRec:8:L1H1", *common]) == 2
    assert "general recommenders only" in capsys.readouterr().err
    assert main(["sweep-data", "--shares", "0.5,2", *common]) == 2
    assert "in (0, 1]" in capsys.readouterr().err
    assert main(["sweep-data", "--shares", "half", *common]) == 2
    assert "--shares must be comma-separated numbers" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))


def test_a_suite_pairing_brings_its_training_settings_tuned_teacher_and_fixed_hyperparameters(tmp_path):
    from kdbench.commands.data_share import _template

    bpr64, bpr5 = BackboneSpec.parse("BPR:64"), BackboneSpec.parse("BPR:5")
    with pytest.raises(KdbenchError, match="tune"):  # the default suite tunes its teachers: tuned first
        _template("ml-100k", bpr64, bpr5, None, None, None, None, tmp_path)
    study = tmp_path / "tuning" / "ml-100k" / "BPR-64_to_BPR-5" / "teacher.json"
    study.parent.mkdir(parents=True)
    summary = json.loads((REPO / "results" / study.relative_to(tmp_path)).read_text())
    summary["best_training"] = {"learning_rate": 0.002, "weight_decay": 1e-6}
    study.write_text(json.dumps(summary))
    suite_cell, fixed = _template("ml-100k", bpr64, bpr5, None, None, None, None, tmp_path)
    assert (suite_cell.train.learning_rate, suite_cell.train.max_epochs) == (0.005, 400)  # kdbench/suites/default.yaml
    teacher = suite_cell.teacher_settings  # the suite's, with the study's learning rate and weight decay
    assert (teacher.learning_rate, teacher.weight_decay, teacher.max_epochs) == (0.002, 1e-6, 300)
    assert suite_cell.strategy == "scratch" and fixed["de"] == (("num_experts", 5),) and fixed["kd"] == ()
    short, _ = _template("ml-100k", bpr64, bpr5, None, None, 3, 2, tmp_path)
    assert (short.train.max_epochs, short.teacher_settings.max_epochs, short.train.patience) == (3, 3, 2)
    assert short.teacher_settings.learning_rate == 0.002
    other, fixed = _template("ml-100k", BackboneSpec.parse("BPR:8"), BackboneSpec.parse("BPR:4"), None, None,
                             None, None, tmp_path)
    assert other.train == other.teacher_settings and fixed == {}  # not in the suite: TrainSettings' defaults
