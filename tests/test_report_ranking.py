"""Issue 26 in the leaderboard: the seed-variance floor behind every printed p-value, each table's top
group and rank intervals (kdbench.report.ranking), and the tuned table's budget line (report.budget)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp

from kdbench.report import stats
from kdbench.run.record import RunStore
from kdbench.report import aggregate, detectable_effects, load_runs, write_reports
from kdbench.report.budget import budget_cell, budget_line
from kdbench.report.tuning_summary import pairing_budget_line
from tests.test_report import PAIRING, USERS, _tables, record

SEEDS = range(5)
_rng = np.random.default_rng(26)
BASE = {s: np.round(_rng.uniform(0.1, 0.4, len(USERS)), 6) for s in SEEDS}
# strategy -> per-seed shift (the same for every user) plus a small per-user noise
SHIFTS = {"scratch": [0.0] * 5, "big": [0.10, 0.11, 0.09, 0.10, 0.105], "twin": [0.10, 0.105, 0.095, 0.10, 0.11],
          "none": [0.0, 0.005, -0.005, 0.002, 0.0]}
NOISE = {name: {s: np.round(_rng.normal(0, 0.002, len(USERS)), 6) for s in SEEDS} for name in SHIFTS}


def _values(name, seed):
    return BASE[seed] + SHIFTS[name][seed] + (NOISE[name][seed] if name != "scratch" else 0.0)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranking") / "results"
    store = RunStore(root)
    store.write("toy", PAIRING, "teacher", 0, record("teacher", 0, 0.60))
    for name in SHIFTS:
        for seed in SEEDS:
            values = _values(name, seed)
            order = np.random.default_rng([seed, len(name)]).permutation(len(USERS))
            store.write("toy", PAIRING, name, seed, record(name, seed, float(values.mean()), per_user=values,
                                                           user_order=order))
    out = root.parent / "out"
    write_reports(root, out, plot=False)
    return {"table": aggregate(load_runs(root)), "dir": out}


def _row(table, name):
    return table[table["strategy"] == name].iloc[0]


def _runs(names):
    return {name: {seed: pd.Series(_values(name, seed), index=USERS) for seed in SEEDS} for name in names}


def test_primary_p_has_the_seed_variance_floor(board):
    """p against scratch is the seed-bounded test: never below the paired t-test over the seeds."""
    for name in ("big", "twin", "none"):
        x = np.array([_values(name, s) for s in SEEDS])
        y = np.array([_values("scratch", s) for s in SEEDS])
        bounded = stats.compare(x, y, seed_bound=True)
        row = _row(board["table"], name)
        assert row["p_value_mixed"] == pytest.approx(float(bounded.p_value), rel=1e-9)
        seeds_only = sp.ttest_1samp((x - y).mean(axis=1), 0.0).pvalue
        assert row["p_value_mixed"] >= seeds_only * (1 - 1e-9)
        assert row["p_value_mixed"] > float(stats.compare(x, y).p_value)  # tighter without the floor
    # a large, consistent gain still gets its mark under the floor (5 seeds, 3 comparisons)
    assert _row(board["table"], "big")["p_value_holm"] < 0.01


def test_top_group_and_rank_intervals_match_the_statistics(board):
    table = board["table"]
    students = ["big", "twin", "none", "scratch"]
    leader = table.loc[table["rank"] == 1, "strategy"].iloc[0]  # the table's best-ranked student
    expected = stats.top_group(_runs(students), leader=leader)
    ranks = stats.rank_intervals(_runs(students))
    for name in students:
        row = _row(table, name)
        i = expected.names.index(name)
        assert bool(row["top_group"]) == bool(expected.in_top[i])
        assert row["rank_low"] == ranks.loc[name, "rank_low"] and row["rank_high"] == ranks.loc[name, "rank_high"]
        if name != expected.leader:
            assert row["p_value_vs_leader_holm"] == pytest.approx(float(expected.p_holm[i]))
    # big and twin are within noise of each other: both in the top group; none and scratch are far below
    assert set(table.loc[table["top_group"].fillna(False).astype(bool), "strategy"]) == {"big", "twin"}
    assert {_row(table, n)["rank_low"] for n in ("big", "twin")} == {1}
    assert {_row(table, n)["rank_high"] for n in ("none", "scratch")} == {4}
    teacher = _row(table, "teacher")
    assert pd.isna(teacher["top_group"]) and np.isnan(teacher["rank_low"])


def test_markdown_csv_and_json_carry_the_ranking(board):
    text = (board["dir"] / "leaderboard.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| #"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[11] == "p vs leader" and cells[14:16] == ["rank [95% CI]", "top group"]
    rows = {r[1]: r for r in _tables(text)["toy: BPR:64 → BPR:8"]}
    table = board["table"]
    for name in ("big", "twin", "none"):
        row = _row(table, name)
        assert rows[name][14] == f"{int(row['rank'])} [{int(row['rank_low'])}–{int(row['rank_high'])}]"
        assert rows[name][15] == ("★" if row["top_group"] else "")
    assert rows["**teacher (BPR:64)**"][14:16] == ["", ""]
    # records without a stored config: the teacher's settings are unknown, and not tuned
    assert "Teacher BPR:64: learning rate not recorded, weight decay not recorded; fixed by the suite" in text
    for phrase in ("top group (★)", "Seed-variance floor", "rank [95% CI]", "p vs leader"):
        assert phrase in text
    with open(board["dir"] / "leaderboard.csv", newline="") as handle:
        by_name = {r["strategy"]: r for r in csv.DictReader(handle)}
    assert by_name["none"]["top_group"] == "False" and by_name["big"]["top_group"] == "True"
    assert by_name["teacher"]["top_group"] == "" and by_name["none"]["rank_high"] == "4"
    payload = json.loads((board["dir"] / "leaderboard.json").read_text())
    json_rows = {r["strategy"]: r for r in payload["rows"]}
    assert json_rows["twin"]["top_group"] is True and json_rows["teacher"]["top_group"] is None
    assert {"rank_low", "rank_high", "top_group", "p_value_vs_leader_holm"} <= set(payload["columns"])


def _tuned(strategies, budgets, units, spent, trials=(10, 14)):
    rows = [{"family": "teacher", "tuning_budget": pd.NA, "tuning_budget_unit": None,
             "tuning_epochs_spent": pd.NA, "tuning_trials": pd.NA}]
    for name, budget, unit, used, counted in zip(strategies, budgets, units, spent, trials):
        rows.append({"family": "response", "strategy": name, "tuning_budget": budget, "tuning_budget_unit": unit,
                     "tuning_epochs_spent": used, "tuning_trials": counted})
    return pd.DataFrame(rows)


def test_the_budget_line_says_equal_only_for_equal_budgets_in_epochs():
    equal = budget_line(_tuned(["scratch", "kd"], [400, 400], ["epochs", "epochs"], [400, 392]))
    assert "**400 epochs per strategy**, equal for every strategy, scratch included; epochs spent 392-400" in equal
    unequal = budget_line(_tuned(["scratch", "kd"], [400, 300], ["epochs", "epochs"], [400, 300]))
    assert "NOT equal across strategies" in unequal and "equal for every" not in unequal
    trials = budget_line(_tuned(["scratch", "kd"], [12, 12], ["trials", "trials"], [pd.NA, pd.NA]))
    assert "**12 trials per strategy**" in trials and "NOT an equal budget in training epochs" in trials
    assert budget_cell({"tuning_trials": 14, "tuning_epochs_spent": 400}) == "14 (400)"
    assert budget_cell({"tuning_trials": 12, "tuning_epochs_spent": pd.NA}) == "12"
    assert budget_cell({"tuning_trials": pd.NA}) == ""


def test_the_tuning_summary_says_equal_only_for_equal_budgets_in_epochs():
    def summary(budget, unit, spent):
        return {"budget": budget, "budget_unit": unit, "epochs_spent": spent}

    assert pairing_budget_line([summary(400, "epochs", 400), summary(400, "epochs", 380)]) == (
        "Budget per strategy: 400 epochs, equal for every strategy, scratch included; epochs spent 380-400.")
    assert "NOT equal" in pairing_budget_line([summary(400, "epochs", 400), summary(300, "epochs", 300)])
    old = pairing_budget_line([{"budget": 12}, {"budget": 12}])  # a summary from before epoch budgets
    assert old == "Budget per strategy: 12 trials, counted in trials, so NOT an equal budget in training epochs."


def test_the_tuning_summary_counts_the_epochs_of_studies_made_before_epoch_budgets(tmp_path):
    """A summary without `epochs_spent` (trial budgets) gets it from its storage's trials."""
    import optuna

    from kdbench.report.tuning_summary import write_tuning_report

    folder = tmp_path / "tuning" / "toy" / "BPR-8_to_BPR-4"
    folder.mkdir(parents=True)
    for strategy, epochs in (("scratch", [5, 7]), ("kd", [3, 4])):
        study = optuna.create_study(storage=f"sqlite:///{folder / strategy}.db", study_name=f"toy/BPR:8->BPR:4/{strategy}",
                                    direction="maximize")
        for number, spent in enumerate(epochs):
            trial = study.ask()
            trial.set_user_attr("epochs", spent)
            study.tell(trial, 0.1 + number / 100)
        (folder / f"{strategy}.json").write_text(json.dumps({
            "dataset": "toy", "pairing": "BPR:8->BPR:4", "strategy": strategy, "study": f"toy/BPR:8->BPR:4/{strategy}",
            "storage": f"{strategy}.db", "budget": 2, "trials_counted": 2, "finished": True, "best_trial": 1,
            "identity": {"strategy_code": "x", "fixed_hparams": {}}, "best_hparams": {}, "best_training": {},
            "trials_complete": 2, "trials_pruned": 0, "trials_failed": 0, "compute_seconds": 1.0,
            "best_valid_ndcg@10": 0.11, "tuning": {"trials": 2, "seeds": [100], "startup_trials": 1,
                                                   "pruner": {"startup_trials": 1, "warmup_epochs": 1}}}))
    write_tuning_report(tmp_path)
    text = (tmp_path / "tuning" / "summary.md").read_text()
    assert ("Budget per strategy: 2 trials, counted in trials, so NOT an equal budget in training epochs; "
            "epochs spent 7-12.") in text


def test_compression_rows_are_reference_rows_that_change_no_distillation_rank_or_holm(board, tmp_path):
    """Adding compression rows (an SVD above every student, a quantised KD) to a table leaves the
    distilled students' ranks, top group and Holm-adjusted p exactly as they were; the compression
    rows are unnumbered, outside the top group, Holm-adjusted among themselves only."""
    root = tmp_path / "results"
    store = RunStore(root)
    store.write("toy", PAIRING, "teacher", 0, record("teacher", 0, 0.60))
    for name in SHIFTS:
        for seed in SEEDS:
            store.write("toy", PAIRING, name, seed, record(name, seed, float(_values(name, seed).mean()),
                                                           per_user=_values(name, seed)))
    for name, family, shift in (("svd", "compression", 0.2), ("kd+ptq", "response+compression", 0.05)):
        for seed in SEEDS:
            values = _values("scratch", seed) + shift + NOISE["big"][seed]
            store.write("toy", PAIRING, name, seed, record(name, seed, float(values.mean()), family=family,
                                                           per_user=values))
    table = aggregate(load_runs(root))
    before = board["table"].set_index("strategy")
    after = table.set_index("strategy")
    assert after.loc["svd", "ndcg@10_mean"] > after.loc["big", "ndcg@10_mean"]  # the best row of the table
    for name in SHIFTS:
        for column in ("rank", "top_group", "p_value_holm", "rank_low", "rank_high", "p_value_vs_leader_holm"):
            assert after.loc[name, column] == before.loc[name, column] or (
                pd.isna(after.loc[name, column]) and pd.isna(before.loc[name, column])), (name, column)
    for name in ("svd", "kd+ptq"):
        assert pd.isna(after.loc[name, "rank"]) and pd.isna(after.loc[name, "top_group"])
        assert pd.isna(after.loc[name, "rank_low"])
    raw = after.loc[["svd", "kd+ptq"], "p_value_mixed"].to_numpy(float)
    assert after.loc[["svd", "kd+ptq"], "p_value_holm"].to_numpy(float) == pytest.approx(stats.holm(raw))
    effects, effects_before = detectable_effects(table).iloc[0], detectable_effects(board["table"]).iloc[0]
    assert effects["n_compared"] == effects_before["n_compared"] == len(SHIFTS) - 1  # the distilled ones only
    assert effects["mde_pct"] == pytest.approx(effects_before["mde_pct"])


def test_a_row_on_fewer_seeds_is_compared_with_the_same_seeds_of_scratch(tmp_path):
    """A row run on 3 of scratch's 5 seeds (the compression suite beside the default suite) gets its
    change over scratch from those 3 seeds of scratch, the comparison its paired interval makes; the
    teacher's change stays against every scratch seed."""
    root = tmp_path / "results"
    store = RunStore(root)
    store.write("toy", PAIRING, "teacher", 0, record("teacher", 0, 0.60))
    shift = {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.05, 4: 0.05}  # scratch's last two seeds happen to be better
    for seed in SEEDS:
        values = _values("scratch", seed) + shift[seed]
        store.write("toy", PAIRING, "scratch", seed, record("scratch", seed, float(values.mean()), per_user=values))
    for seed in (0, 1, 2):  # the same models as scratch's, a quantised copy: no change at all
        values = _values("scratch", seed)
        store.write("toy", PAIRING, "ptq", seed, record("ptq", seed, float(values.mean()), family="compression",
                                                        per_user=values))
    table = aggregate(load_runs(root)).set_index("strategy")
    assert table.loc["ptq", "ndcg@10_vs_scratch_pct"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["ptq", "rel_change_ci_low"] <= 0 <= table.loc["ptq", "rel_change_ci_high"]
    scratch_all = np.mean([_values("scratch", s).mean() + shift[s] for s in SEEDS])
    assert table.loc["teacher", "ndcg@10_vs_scratch_pct"] == pytest.approx((0.60 / scratch_all - 1) * 100)
