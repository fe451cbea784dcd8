"""`report --changes-from`: a leaderboard against an earlier one, row by row (no training)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from conftest import run_cli
from kdbench.report.changes import leaderboard_changes, read_leaderboard_csv

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "leaderboard.csv"
# the committed runs of one table, enough for the rows these tests change (the whole store grows with
# the datasets grid, and `report` reads all of it)
ONE_TABLE = Path("ml-100k") / "BPR-64_to_BPR-5"


def _committed_runs(results: Path) -> pd.DataFrame:
    """That table's committed runs copied into `results`; its committed leaderboard rows."""
    shutil.copytree(COMMITTED.parent / "runs" / ONE_TABLE, results / "runs" / ONE_TABLE)
    table = pd.read_csv(COMMITTED)
    return table[(table["dataset"] == "ml-100k") & (table["pairing"] == "BPR:64->BPR:5")].copy()
KEYS = dict(dataset="ml-100k", pairing="BPR:64->BPR:5", variant="tuned")


def _board(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{**KEYS, **row} for row in rows])


def _row(strategy, mean, std, n=5, rank=1.0, top=True) -> dict:
    return {"strategy": strategy, "ndcg@10_mean": mean, "ndcg@10_std": std, "n_seeds": n, "rank": rank,
            "top_group": top}


def test_each_row_gets_its_change_welch_p_and_status():
    before = _board([_row("kd", 0.250, 0.004, rank=1.0), _row("rrd", 0.240, 0.004, rank=2.0, top=False),
                     _row("scratch", 0.230, 0.003, rank=3.0, top=False), _row("bd", 0.20, 0.01, rank=4.0, top=False)])
    after = _board([_row("kd", 0.251, 0.004, rank=2.0), _row("rrd", 0.260, 0.004, rank=1.0),
                    _row("scratch", 0.229, 0.003, rank=3.0, top=False), _row("pckd", 0.25, 0.004, rank=4.0)])
    changes = leaderboard_changes(before, after).set_index("strategy")
    assert changes.loc["rrd", "change_pct"] == pytest.approx(100 * (0.260 / 0.240 - 1))
    expected = stats.ttest_ind_from_stats(0.240, 0.004, 5, 0.260, 0.004, 5, equal_var=False).pvalue
    assert changes.loc["rrd", "p_value"] == pytest.approx(expected)
    assert changes["status"].to_dict() == {"kd": "same", "rrd": "up", "scratch": "same", "bd": "gone",
                                           "pckd": "new"}
    assert (changes.loc["kd", "rank_before"], changes.loc["kd", "rank_after"]) == (1.0, 2.0)


def test_a_row_that_leaves_the_top_group_moved_even_within_the_seed_noise():
    before = _board([_row("kd", 0.250, 0.01, top=True)])
    after = _board([_row("kd", 0.249, 0.01, top=False)])
    (row,) = leaderboard_changes(before, after).itertuples(index=False)
    assert row.p_value > 0.5 and row.status == "down"


def test_a_single_seed_row_gets_no_test_and_does_not_move():
    before, after = _board([_row("kd", 0.25, float("nan"), n=1)]), _board([_row("kd", 0.30, float("nan"), n=1)])
    (row,) = leaderboard_changes(before, after).itertuples(index=False)
    assert pd.isna(row.p_value) and row.status == "same"


def test_the_committed_leaderboard_against_itself_has_every_row_the_same():
    board = read_leaderboard_csv(COMMITTED)
    changes = leaderboard_changes(board, board)
    assert len(changes) == len(board)
    assert set(changes["status"]) == {"same"}
    assert (changes["change_pct"].dropna() == 0).all()


def test_report_writes_the_changes_page_beside_the_leaderboard(capsys, tmp_path):
    results = tmp_path / "results"
    table = _committed_runs(results)
    before = tmp_path / "before.csv"
    table.loc[table["strategy"] == "rrd", "ndcg@10_mean"] -= 0.05  # rrd was worse before
    table.to_csv(before, index=False)
    code, out, err = run_cli(capsys, "report", "--results-dir", str(results), "--changes-from", str(before))
    assert code == 0, err
    page = (results / "leaderboard-changes.md").read_text()
    assert "wrote " + str(results / "leaderboard-changes.md") in out
    rrd_lines = [line for line in page.splitlines() if line.startswith("| rrd ")]
    statuses = {line.rstrip(" |").rsplit("|", 1)[1].strip() for line in rrd_lines}
    assert "up" in statuses and statuses <= {"up", "same"}  # "same" where the seed spread is wider than 0.05
    assert "| kd " in page and page.count("## ml-100k") >= 2


@pytest.mark.parametrize("content, fragment", [(None, "no leaderboard CSV at"),
                                               ("a,b\n1,2\n", "no column 'dataset'"),
                                               ("", "is not a leaderboard CSV")])
def test_a_bad_before_file_is_one_line_exit_2_and_nothing_is_written(capsys, tmp_path, content, fragment):
    results = tmp_path / "results"
    _committed_runs(results)
    before = tmp_path / "before.csv"
    if content is not None:
        before.write_text(content)
    code, _, err = run_cli(capsys, "report", "--results-dir", str(results), "--changes-from", str(before))
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in results.iterdir()) == ["runs"]


def test_the_leaderboard_itself_as_the_before_file_is_read_before_it_is_rewritten(capsys, tmp_path):
    results = tmp_path / "results"
    table = _committed_runs(results)
    table.loc[table["strategy"] == "rrd", "ndcg@10_mean"] -= 0.05
    table.to_csv(results / "leaderboard.csv", index=False)  # an older leaderboard where the new one goes
    code, _, err = run_cli(capsys, "report", "--results-dir", str(results),
                           "--changes-from", str(results / "leaderboard.csv"))
    assert code == 0, err
    assert "| up " in (results / "leaderboard-changes.md").read_text()
