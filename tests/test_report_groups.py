"""The leaderboard's light / heavy user columns on constructed runs (kdbench.report.groups)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from kdbench.report import stats
from kdbench.run.record import RunStore
from kdbench.report import aggregate, load_runs, write_reports
from kdbench.report.groups import GROUPS_LEGEND, dataset_groups
from tests.test_report import PAIRING, USERS, record

# USERS' training interactions: q1 = 3 (numpy 'lower'), q3 = 8 ('higher'): light 3, 5, 8; heavy 89, 144, 233.
COUNTS = dict(zip(USERS, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))
LIGHT = [3, 5, 8]
HEAVY = [89, 144, 233]
_rng = np.random.default_rng(11)
SCRATCH = {s: np.round(_rng.uniform(0.1, 0.5, len(USERS)), 6) for s in range(3)}
SHIFT = np.array([0.1 if u in LIGHT else -0.05 if u in HEAVY else 0.0 for u in USERS])
KD = {s: np.round(SCRATCH[s] + SHIFT + _rng.uniform(-0.02, 0.02, len(USERS)), 6) for s in range(3)}


def _with_counts(rec):
    """The record with its test users' training interactions, in its per-user order."""
    return rec | {"test_users": {"train_interactions": [COUNTS[u] for u in rec["per_user"]["user_ids"]]}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("groups") / "results"
    store = RunStore(root)
    store.write("toy", PAIRING, "teacher", 0, _with_counts(record("teacher", 0, 0.40)))
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(USERS))  # stored in different orders
        store.write("toy", PAIRING, "scratch", seed, _with_counts(
            record("scratch", seed, float(SCRATCH[seed].mean()), per_user=SCRATCH[seed])))
        store.write("toy", PAIRING, "kd", seed, _with_counts(
            record("kd", seed, float(KD[seed].mean()), per_user=KD[seed], user_order=order)))
    # a second dataset of records from before issue 27: no counts, no group columns
    store.write("old", PAIRING, "teacher", 0, record("teacher", 0, 0.40, dataset="old"))
    for seed in range(2):
        store.write("old", PAIRING, "scratch", seed, record("scratch", seed, 0.2, dataset="old",
                                                            per_user=SCRATCH[seed]))
        store.write("old", PAIRING, "kd", seed, record("kd", seed, 0.25, dataset="old", per_user=KD[seed]))
    return root


def _matrices(users):
    columns = [USERS.index(u) for u in users]
    return (np.array([KD[s][columns] for s in range(3)]), np.array([SCRATCH[s][columns] for s in range(3)]))


def test_group_columns_are_the_paired_statistics_on_each_groups_users(runs):
    table = aggregate(load_runs(runs))
    kd = table[(table["dataset"] == "toy") & (table["strategy"] == "kd")].iloc[0]
    for group, users in (("light", LIGHT), ("heavy", HEAVY)):
        x, y = _matrices(users)
        assert kd[f"ndcg@10_vs_scratch_{group}_pct"] == pytest.approx((x.mean() - y.mean()) / y.mean() * 100)
        expected = stats.compare(x, y, 0.95, seed_bound=True)  # the report's test (issue 26)
        assert kd[f"p_value_mixed_{group}"] == pytest.approx(float(expected.p_value))
        assert kd[f"rel_change_ci_low_{group}"] == pytest.approx(float(expected.ci_low) * 100)
        assert kd[f"rel_change_ci_high_{group}"] == pytest.approx(float(expected.ci_high) * 100)
        assert kd[f"n_users_{group}"] == len(users)
    assert kd["ndcg@10_vs_scratch_light_pct"] > 20 and kd["ndcg@10_vs_scratch_heavy_pct"] < -5
    for strategy in ("scratch", "teacher"):
        row = table[(table["dataset"] == "toy") & (table["strategy"] == strategy)].iloc[0]
        assert np.isnan(row["ndcg@10_vs_scratch_light_pct"]) and np.isnan(row["p_value_mixed_heavy"])
    old = table[(table["dataset"] == "old") & (table["strategy"] == "kd")].iloc[0]
    assert np.isnan(old["ndcg@10_vs_scratch_light_pct"]) and np.isnan(old["n_users_heavy"])
    assert not np.isnan(old["p_value_mixed"])  # the main column is unaffected


def test_group_columns_in_csv_json_and_markdown(runs, tmp_path):
    write_reports(runs, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "leaderboard.csv", newline="")))
    kd = {(r["dataset"], r["strategy"]): r for r in rows}
    assert float(kd["toy", "kd"]["ndcg@10_vs_scratch_light_pct"]) > 20
    assert kd["old", "kd"]["ndcg@10_vs_scratch_light_pct"] == ""
    payload = json.loads((tmp_path / "leaderboard.json").read_text())
    assert "p_value_mixed_heavy" in payload["columns"]
    text = (tmp_path / "leaderboard.md").read_text()
    toy, old = text.split("## toy:")[1].split("## ")[0], text.split("## old:")[1].split("## ")[0]
    header = [cell.strip() for cell in toy.split("Quality:")[1].strip().splitlines()[0].split("|")]
    assert header[15:17] == ["light vs scratch", "heavy vs scratch"] and "light vs scratch" not in old
    kd_line = next(line for line in toy.splitlines() if line.startswith("|") and "| kd " in line)
    light_cell = kd_line.split("|")[15].strip()
    assert light_cell.startswith(f"{float(kd['toy', 'kd']['ndcg@10_vs_scratch_light_pct']):+.1f}% [")
    assert GROUPS_LEGEND in text and "Light users are the closest a static split gets to new users" in text


def test_a_report_of_old_records_has_no_group_legend_or_markdown_columns(tmp_path):
    store = RunStore(tmp_path / "results")
    store.write("old", PAIRING, "teacher", 0, record("teacher", 0, 0.40, dataset="old"))
    store.write("old", PAIRING, "scratch", 0, record("scratch", 0, 0.2, dataset="old", per_user=SCRATCH[0]))
    write_reports(tmp_path / "results", tmp_path / "out")
    text = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "light vs scratch" not in text and GROUPS_LEGEND not in text


def test_beyond_accuracy_means_over_seeds_in_the_csv(tmp_path):
    store = RunStore(tmp_path / "results")
    store.write("toy", PAIRING, "teacher", 0, record("teacher", 0, 0.40)
                | {"beyond": {"giniindex@10": 0.9, "itemcoverage@10": 0.1, "tail_ratio": 0.8}})
    for seed, gini in enumerate([0.5, 0.7]):
        store.write("toy", PAIRING, "scratch", seed, record("scratch", seed, 0.2, per_user=SCRATCH[seed])
                    | {"beyond": {"giniindex@10": gini, "averagepopularity@10": 100.0 + seed}})
    store.write("toy", PAIRING, "kd", 0, record("kd", 0, 0.25, per_user=KD[0]))  # before issue 27
    table = aggregate(load_runs(tmp_path / "results"))
    by = table.set_index("strategy")
    assert by.loc["scratch", "giniindex@10_mean"] == pytest.approx(0.6)
    assert by.loc["scratch", "averagepopularity@10_mean"] == pytest.approx(100.5)
    assert by.loc["teacher", "itemcoverage@10_mean"] == pytest.approx(0.1)
    assert np.isnan(by.loc["kd", "giniindex@10_mean"]) and np.isnan(by.loc["scratch", "itemcoverage@10_mean"])
    write_reports(tmp_path / "results", tmp_path / "out")
    rows = {r["strategy"]: r for r in csv.DictReader(open(tmp_path / "out" / "leaderboard.csv", newline=""))}
    assert float(rows["scratch"]["giniindex@10_mean"]) == pytest.approx(0.6) and rows["kd"]["giniindex@10_mean"] == ""


def test_the_dataset_groups_partition_its_test_users_at_the_stated_quartiles(runs):
    frame = load_runs(runs)
    groups = dataset_groups(frame[(frame["dataset"] == "toy") & (frame["status"] == "ok")])
    # every test user once, whichever run (and per-user order) its count came from
    assert sorted(groups.index) == sorted(USERS) and groups.index.is_unique
    assert sorted(groups.index[groups == "light"]) == LIGHT  # counts <= q1 = 3 ('lower' 25th percentile)
    assert sorted(groups.index[groups == "heavy"]) == HEAVY  # counts >= q3 = 8 ('higher' 75th percentile)
    assert set(groups[~groups.index.isin(LIGHT + HEAVY)]) == {"middle"}
    assert dataset_groups(frame[frame["dataset"] == "old"]) is None  # no counts recorded: no groups
