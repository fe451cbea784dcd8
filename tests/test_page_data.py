"""The leaderboard page's file (`kdbench.report.page`), without a browser: what it embeds, that it loads
nothing from the network, that `report` writes it and `verify` checks it byte for byte."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from kdbench.cli import main
from kdbench.report.page import PAGE_NAME, render_page, write_page
from kdbench.report.page.studies import read_trials
from kdbench.report import write_reports
from kdbench.run.record import RunStore
from tests.test_cross_dataset import html_cells, html_strong, markdown_cells, markdown_strong
from tests.test_report import PAIRING, record


def embedded(page: str) -> dict:
    found = re.search(r'<script id="kdbench-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two tables (defaults, and a second pairing) with a failed seed and an overridden label."""
    store = RunStore(tmp_path_factory.mktemp("page") / "results")
    for label, seed, ndcg in (("teacher", 0, 0.40), ("scratch", 0, 0.20), ("scratch", 1, 0.22),
                              ("kd", 0, 0.25), ("kd", 1, 0.27), ("kd@T=2", 0, 0.24)):
        store.write("toy", PAIRING, label, seed, record(label, seed, ndcg, day=seed + 1))
    store.write("toy", PAIRING, "kd", 2, record("kd", 2, None, status="failed", day=5))
    store.write("toy", "BPR:64->BPR:16", "teacher", 0, record("teacher", 0, 0.40, student="BPR:16"))
    store.write("toy", "BPR:64->BPR:16", "scratch", 0, record("scratch", 0, 0.30, student="BPR:16", params=1600))
    write_reports(store.root, store.root, command="python -m kdbench run --all", wall_seconds=60.0, plot=False)
    return store.root


def test_report_writes_the_page_and_it_rebuilds_from_leaderboard_json_byte_for_byte(results, tmp_path):
    page = (results / PAGE_NAME).read_bytes()
    write_page(results)  # from leaderboard.json and the runs, without aggregating again
    assert (results / PAGE_NAME).read_bytes() == page
    board = json.loads((results / "leaderboard.json").read_text())
    again = render_page(board["rows"], board["columns"], board["header"], results,
                        cross_dataset=board["cross_dataset"], compute=board["compute"])
    assert again.encode() == page


def test_the_page_shows_the_compute_per_dataset_as_leaderboard_md_does(results):
    page = (results / PAGE_NAME).read_text()
    section = re.search(r'<section id="compute".*?</section>', page, re.S).group(0)
    assert page.index('id="board"') < page.index('<section id="compute"')  # below the table
    assert '<section id="answer"' not in page  # no tuned tables: no answer, as in leaderboard.md
    markdown = (results / "leaderboard.md").read_text()
    rows = html_cells(section)
    assert rows == markdown_cells(markdown, "compute per dataset")
    assert [row[0] for row in rows] == ["toy", "toy: BPR:64 → BPR:16", "toy: BPR:64 → BPR:8"]
    # the dataset's row in bold in both, its pairings not
    assert html_strong(section) == markdown_strong(markdown, "compute per dataset") == [True, False, False]


def test_every_row_carries_its_runs_rerun_paths_and_its_csv_line(results):
    data = embedded((results / PAGE_NAME).read_text())
    rows = [dict(zip(data["columns"], values)) | extra for values, extra in zip(data["rows"], data["extra"])]
    # the page's CSV of all rows, in the leaderboard's order, is leaderboard.csv itself
    csv_text = data["csv_header"] + "\n" + "".join(row["csv"] + "\n" for row in rows)
    assert csv_text == (results / "leaderboard.csv").read_text()
    kd = next(r for r in rows if r["strategy"] == "kd")
    runs = [data["runs"][i] for i in kd["runs"]]
    assert [(r["seed"], r["status"]) for r in runs] == [(0, "ok"), (1, "ok"), (2, "failed")]
    assert runs[2]["error"] == "RuntimeError: loss became NaN"
    assert [r["path"] for r in runs] == [f"runs/toy/BPR-64_to_BPR-8/kd/seed{s}.json" for s in range(3)]
    assert all((results / r["path"]).is_file() for r in runs)
    assert data["results_folder"] == "results"
    assert runs[0]["test"]["ndcg@10"] == 0.25 and "per_user" not in runs[0]
    assert data["environments"][runs[0]["env"]]["cpu"] == "Test CPU 9000"
    override = next(r for r in rows if r["strategy"] == "kd@T=2")
    assert [data["runs"][i]["path"] for i in override["runs"]] == ["runs/toy/BPR-64_to_BPR-8/kd@T=2/seed0.json"]
    teachers = [r for r in rows if r["family"] == "teacher"]
    assert len(teachers) == 2 and all(len(t["runs"]) == 1 for t in teachers)
    assert {data["runs"][t["runs"][0]]["path"].split("/")[2] for t in teachers} == {"BPR-64_to_BPR-8", "BPR-64_to_BPR-16"}
    assert kd["backbones"] == ["general", "BPR"]
    assert len({r["key"] for r in rows}) == len(rows)


def test_the_page_references_nothing_outside_itself_and_its_policy_forbids_fetching(results):
    page = (results / PAGE_NAME).read_text()
    urls = set(re.findall(r"[a-z][a-z0-9+.-]*://[^\s\"'<>)]*", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # a namespace name, never fetched
    assert not re.search(r"<(link|img|iframe|object|embed)\b[^>]*\b(href|src)=\"(?!data:)", page)
    assert not re.search(r"<script\b[^>]*\bsrc=", page)
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page).group(1)
    rules = dict((part.split()[0], part.split()[1:]) for part in policy.split("; "))
    assert rules["default-src"] == ["'none'"]  # connect, font, frame, media, ... fall back to it
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert rules["script-src"] == [f"'sha256-{digest}'"]  # only that inline script runs


def test_text_in_the_data_cannot_end_the_data_script(results):
    board = json.loads((results / "leaderboard.json").read_text())
    rows = [dict(board["rows"][0], strategy="x</script><script>alert(1)</script><!--")]
    page = render_page(rows, board["columns"], board["header"], results)
    assert "alert(1)</script>" not in page and page.count("</script>") == 2
    assert embedded(page)["rows"][0][board["columns"].index("strategy")] == rows[0]["strategy"]


def test_tuning_trials_are_read_as_optuna_wrote_them(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = tmp_path / "kd.db"
    study = optuna.create_study(study_name="toy/BPR:64->BPR:8/kd", storage=f"sqlite:///{storage}",
                                direction="maximize")
    for number in range(3):
        trial = study.ask()
        trial.suggest_int("K", 5, 100, log=True)
        trial.suggest_float("T", 1.0, 100.0, log=True)
        trial.suggest_categorical("loss", ["bce", "listwise", 3])
        if number == 1:
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif number == 2:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, 0.25)
    expected = [(t.number, t.state.name, t.params) for t in study.get_trials()]
    del study
    trials = read_trials(storage, "toy/BPR:64->BPR:8/kd")
    assert [(t["number"], t["state"], t["params"]) for t in trials] == expected
    assert [t["value"] for t in trials][0] == 0.25 and trials[1]["value"] is None
    assert [t["interrupted"] for t in trials] == [False, True, False]
    assert isinstance(trials[0]["params"]["K"], int)
    assert read_trials(storage, "another study") == [] and read_trials(tmp_path / "none.db", "x") == []


def test_verify_compares_the_page_and_misses_none(capsys, results, tmp_path):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    assert main(["verify", "--results-dir", str(copy)]) == 0
    page = copy / PAGE_NAME
    page.write_text(page.read_text().replace('"kd"', '"kd2"', 1))
    capsys.readouterr()
    assert main(["verify", "--results-dir", str(copy)]) == 1
    assert f"{page} differs from what `report` writes now (line" in capsys.readouterr().out
    page.unlink()
    assert main(["verify", "--results-dir", str(copy)]) == 1
    assert "leaderboard is incomplete: no .html beside the others" in capsys.readouterr().out
