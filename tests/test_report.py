"""The reporting layer: hand-made run files in, leaderboard numbers and files out (no training)."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from kdbench.run.record import RunStore
from kdbench.report import COLUMNS, aggregate, load_runs, write_reports

USERS = [3, 5, 8, 13, 21, 34, 55, 89, 144, 233]
TEACHER, STUDENT = "BPR:64", "BPR:8"
PAIRING = f"{TEACHER}->{STUDENT}"
ENV = {"kdbench": "0.1.0", "recbole": "1.2.1", "torch": "2.3.0", "python": "3.11.9",
       "cpu": "Test CPU 9000", "gpu": "none", "threads": "4"}

# Per-user NDCG@10 by (strategy, seed); the per-user test runs on these.
_rng = np.random.default_rng(7)
PER_USER = {
    ("scratch", s): np.round(_rng.uniform(0, 0.5, len(USERS)), 6) for s in range(3)
}
PER_USER |= {("kd", s): np.round(PER_USER["scratch", s] + _rng.uniform(-0.05, 0.15, len(USERS)), 6)
             for s in range(3)}
PER_USER |= {("twin", s): PER_USER["scratch", s] for s in range(3)}
PER_USER |= {("teacher", 0): np.round(_rng.uniform(0.2, 0.8, len(USERS)), 6)}

# Users are stored in a different order per run: pairing users by position instead of by id fails.
USER_ORDER = {("kd", s): np.random.default_rng(100 + s).permutation(len(USERS)) for s in range(3)}
USER_ORDER |= {("twin", s): np.arange(len(USERS))[::-1] for s in range(3)}

NDCG = {("scratch", 0): 0.20, ("scratch", 1): 0.22, ("scratch", 2): 0.24,
        ("kd", 0): 0.25, ("kd", 1): 0.27, ("kd", 2): 0.26,
        ("twin", 0): 0.20, ("twin", 1): 0.22, ("twin", 2): 0.24,
        ("teacher", 0): 0.40}


def record(label, seed, ndcg10, *, dataset="toy", teacher=TEACHER, student=STUDENT, family=None,
           per_user=None, user_order=None, params=None, sec_per_epoch=1.0, hit_cap=False, day=1, status="ok"):
    """A run record; `per_user` follows USERS, stored in `user_order` (a permutation) when given."""
    is_teacher = label == "teacher"
    family = family or ("teacher" if is_teacher else "baseline" if label == "scratch" else "response")
    rec = {
        "dataset": dataset, "teacher": teacher, "student": student, "pairing": f"{teacher}->{student}",
        "model": teacher if is_teacher else student, "strategy": label.split("@")[0], "label": label,
        "family": family, "seed": seed, "status": status, "environment": ENV,
        "created": f"2025-01-{day:02d}T10:00:00+00:00", "wall_seconds": 10.0,
    }
    if status != "ok":
        return rec | {"error": "RuntimeError: loss became NaN"}
    values = per_user if per_user is not None else np.full(len(USERS), ndcg10)
    order = np.arange(len(USERS)) if user_order is None else np.asarray(user_order)
    user_ids, values = [USERS[i] for i in order], [values[i] for i in order]
    params = params or (6400 if is_teacher else 800)
    rec |= {
        "test": {"ndcg@10": ndcg10, "ndcg@20": ndcg10 + 0.05, "recall@10": 2 * ndcg10, "recall@20": 3 * ndcg10},
        "per_user": {"user_ids": user_ids, "ndcg@10": [float(v) for v in values],
                     "recall@10": [0.0] * len(USERS), "ndcg@20": [0.0] * len(USERS), "recall@20": [0.0] * len(USERS)},
        "cost": {"params": params, "size_bytes": 4 * params,
                 "throughput_users_per_s": 1000.0 if is_teacher else 5000.0, "latency_p50_ms": 2.0,
                 "latency_p99_ms": 3.0, "batch_users": 256},
        "training": {"best_epoch": 10, "epochs_run": 20, "hit_epoch_cap": hit_cap,
                     "seconds_per_epoch": sec_per_epoch, "train_seconds": 20 * sec_per_epoch,
                     "eval_seconds": 1.0, "kd_prepare_seconds": 0.0},
    }
    if not is_teacher:
        rec["teacher_test"] = {"ndcg@10": 0.40}
    return rec


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    store = RunStore(root / "results")
    for (label, seed), ndcg in NDCG.items():
        rec = record(label, seed, ndcg, per_user=PER_USER[label, seed], day=seed + 1,
                     user_order=USER_ORDER.get((label, seed)), sec_per_epoch=1.5 if label == "kd" else 1.0,
                     hit_cap=(label == "kd" and seed == 0))
        store.write("toy", PAIRING, label, seed, rec)
    store.write("toy", PAIRING, "kd", 3, record("kd", 3, None, status="failed", day=9))
    store.write("toy", PAIRING, "broken", 0, record("broken", 0, None, status="failed", day=2))
    # A second pairing and a second dataset: one table each.
    other = "BPR:64->BPR:16"
    store.write("toy", other, "teacher", 0, record("teacher", 0, 0.40, student="BPR:16"))
    store.write("toy", other, "scratch", 0, record("scratch", 0, 0.30, student="BPR:16", params=1600))
    for seed, value in enumerate([0.10, 0.12]):
        store.write("toy2", PAIRING, "scratch", seed, record("scratch", seed, value, dataset="toy2"))
    store.write("toy2", PAIRING, "teacher", 0, record("teacher", 0, 0.15, dataset="toy2"))
    store.write("toy2", PAIRING, "kd@T=2", 0, record("kd@T=2", 0, 0.13, dataset="toy2"))
    return root / "results"


@pytest.fixture(scope="module")
def table(runs_dir):
    return aggregate(load_runs(runs_dir))


@pytest.fixture(scope="module")
def report_dir(runs_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    write_reports(runs_dir, out, command="python -m kdbench run --all", wall_seconds=3725.0)
    return out


def row_of(table, strategy, dataset="toy", pairing=PAIRING):
    rows = table[(table["dataset"] == dataset) & (table["pairing"] == pairing) & (table["strategy"] == strategy)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_load_runs_keeps_failed_runs_countable(runs_dir):
    runs = load_runs(runs_dir)
    assert len(runs) == 18
    assert (runs["status"] == "failed").sum() == 2
    assert runs.loc[runs["status"] == "failed", "ndcg@10"].isna().all()


def test_mean_std_relative_change_and_teacher_share_match_hand_computed(table):
    kd, scratch, teacher = row_of(table, "kd"), row_of(table, "scratch"), row_of(table, "teacher")
    assert kd["n_seeds"] == 3 and kd["n_failed"] == 1
    assert kd["ndcg@10_mean"] == pytest.approx(0.26)
    assert kd["ndcg@10_std"] == pytest.approx(0.01)  # sample std of .25 .27 .26
    assert scratch["ndcg@10_std"] == pytest.approx(0.02)
    assert kd["recall@10_mean"] == pytest.approx(0.52)
    assert kd["ndcg@20_mean"] == pytest.approx(0.31)
    assert kd["ndcg@10_vs_scratch_pct"] == pytest.approx((0.26 - 0.22) / 0.22 * 100)
    assert kd["teacher_ndcg@10_retained_pct"] == pytest.approx(65.0)
    assert scratch["ndcg@10_vs_scratch_pct"] == pytest.approx(0.0)
    assert teacher["teacher_ndcg@10_retained_pct"] == pytest.approx(100.0)
    assert math.isnan(teacher["ndcg@10_std"])  # one run
    assert kd["compression_vs_teacher"] == pytest.approx(8.0)
    assert kd["epoch_time_ratio_vs_scratch"] == pytest.approx(1.5)
    assert kd["hit_epoch_cap_share"] == pytest.approx(1 / 3)
    assert kd["params"] == 800 and teacher["params"] == 6400
    assert kd["compute_seconds"] == pytest.approx(40.0)  # failed runs' time counts too


def test_p_values_equal_scipy_on_the_same_vectors(table):
    kd = row_of(table, "kd")
    kd_users = np.mean([PER_USER["kd", s] for s in range(3)], axis=0)
    scratch_users = np.mean([PER_USER["scratch", s] for s in range(3)], axis=0)
    assert kd["p_value_vs_scratch"] == pytest.approx(stats.wilcoxon(kd_users, scratch_users).pvalue, rel=1e-12)
    expected_seeds = stats.ttest_rel([0.25, 0.27, 0.26], [0.20, 0.22, 0.24]).pvalue
    assert kd["p_value_seeds"] == pytest.approx(expected_seeds, rel=1e-12)
    assert kd["n_paired_seeds"] == 3 and kd["n_users_tested"] == len(USERS)


def test_strategy_identical_to_scratch_user_by_user_is_not_significant(table, report_dir):
    # twin stores scratch's values in reverse user order: equal by id, different by position.
    twin = row_of(table, "twin")
    assert twin["p_value_mixed"] == 1.0 and twin["p_value_holm"] == 1.0  # t = 0 / 0: no evidence
    assert twin["rel_change_ci_low"] == 0.0 and twin["rel_change_ci_high"] == 0.0
    # scipy rejects all-zero differences; the secondary tests report 1 (documented convention)
    assert twin["p_value_vs_scratch"] == 1.0 and twin["p_value_seeds"] == 1.0
    twin_line = next(line for line in (report_dir / "leaderboard.md").read_text().splitlines()
                     if line.startswith("|") and "| twin " in line)
    assert "†" not in twin_line and "‡" not in twin_line


def test_a_strategy_whose_runs_all_failed_is_a_row_with_no_seeds(table):
    broken = row_of(table, "broken")
    assert broken["n_seeds"] == 0 and broken["n_failed"] == 1
    assert math.isnan(broken["ndcg@10_mean"])


def test_csv_has_one_row_per_cell_and_the_required_columns(report_dir):
    with open(report_dir / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    required = {"dataset", "teacher", "student", "strategy", "family", "n_seeds", "ndcg@10_mean", "ndcg@10_std",
                "recall@10_mean", "recall@10_std", "params", "throughput_users_per_s", "p_value_vs_scratch",
                "p_value_seeds", "ndcg@10_vs_scratch_pct", "teacher_ndcg@10_retained_pct",
                "compression_vs_teacher", "size_bytes", "latency_p50_ms", "train_s_per_epoch",
                "epoch_time_ratio_vs_scratch", "hit_epoch_cap_share", "n_failed", "p_value_mixed",
                "p_value_holm", "rel_change_ci_low", "rel_change_ci_high"}
    assert required <= set(rows[0])
    assert list(rows[0]) == list(COLUMNS)
    keys = [(r["dataset"], r["teacher"], r["student"], r["strategy"]) for r in rows]
    assert len(keys) == len(set(keys)) == 10
    kd = next(r for r in rows if r["dataset"] == "toy" and r["strategy"] == "kd")
    assert float(kd["ndcg@10_mean"]) == pytest.approx(0.26)
    payload = json.loads((report_dir / "leaderboard.json").read_text())
    assert len(payload["rows"]) == 10 and payload["columns"] == list(COLUMNS)


def _tables(markdown):
    """{section heading: [table rows as lists of cells]} for every '## ' section with a table;
    a pairing's cost table is keyed '<heading> / cost'."""
    sections, current = {}, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = line[3:]
            sections[current] = []
        elif current and line == "Cost:":
            current = current + " / cost"
            sections[current] = []
        elif current and line.startswith("|") and not line.startswith("|--"):
            sections[current].append([cell.strip() for cell in line.strip("|").split("|")])
    return {name: rows[1:] for name, rows in sections.items() if rows}


def test_markdown_header_tables_ranking_and_marks(table, report_dir):
    text = (report_dir / "leaderboard.md").read_text()
    for field in ("`python -m kdbench run --all`", "0.1.0 / 1.2.1 / 2.3.0 / 3.11.9", "Test CPU 9000",
                  "GPU", "2025-01-09T10:00:00+00:00", "1h 02m 05s", "Compute time", "18 (2 failed)"):
        assert field in text
    # the wall time belongs to the command (meta), not to the newest run, whose row comes later
    wall_row = next(line for line in text.splitlines() if line.startswith("| Wall time of that command"))
    assert "1h 02m 05s" in wall_row
    tables = _tables(text)
    pairings = {"toy: BPR:64 → BPR:8", "toy: BPR:64 → BPR:16", "toy2: BPR:64 → BPR:8"}
    # scratch ran at two student sizes of the BPR:64 teacher on toy: a compression section
    assert set(tables) == (pairings | {p + " / cost" for p in pairings}
                           | {"Failed runs", "Compression: the same methods at several student sizes"})
    assert "## Inference cost per model shape" in text and "python -m kdbench cost" in text
    rows = tables["toy: BPR:64 → BPR:8"]
    names = [r[1] for r in rows]
    assert names == ["**teacher (BPR:64)**", "kd", "**scratch**", "twin", "broken"]
    assert [r[1] for r in tables["toy: BPR:64 → BPR:8 / cost"]] == names  # cost rows in the same order
    means = [float(r[3].split()[0]) for r in rows if r[3] != "—"]
    assert means == sorted(means, reverse=True)
    assert [r[0] for r in rows] == ["", "1", "2", "3", "4"]
    kd = rows[1]
    assert kd[3].startswith("0.2600 ± 0.0100")
    assert kd[4].startswith("+18.2% [") and kd[5] == "65.0%"
    p_holm = row_of(table, "kd")["p_value_holm"]
    assert kd[3].endswith("‡" if p_holm < 0.01 else "†" if p_holm < 0.05 else "0.0100")
    for phrase in ("### How to read these tables", "Wilcoxon", "paired t-test", "Holm-Bonferroni",
                   "crossed random effects", "`p_value_holm`", "Smallest detectable change"):
        assert phrase in text


def test_report_rebuilds_byte_identical_files_from_stored_runs(runs_dir, tmp_path):
    out = tmp_path / "out"
    first = write_reports(runs_dir, out, command="python -m kdbench run --all", wall_seconds=12.5)
    before = {p.name: p.read_bytes() for p in first}
    second = write_reports(runs_dir, out)  # as `kdbench report` calls it: no command, no wall time
    assert {p.name for p in second} == set(before)
    for path in second:
        assert path.read_bytes() == before[path.name], path.name
    assert "`python -m kdbench run --all`" in (out / "leaderboard.md").read_text()


def test_quick_report_is_written_beside_the_full_one(runs_dir, tmp_path):
    out = tmp_path / "out"
    write_reports(runs_dir, out, command="python -m kdbench run --all", wall_seconds=100.0)
    full = {p.name: p.read_bytes() for p in out.iterdir()}
    quick_runs = tmp_path / "quick"
    RunStore(quick_runs).write("toy", PAIRING, "scratch", 0, record("scratch", 0, 0.2))
    paths = write_reports(quick_runs, out, quick=True, command="python -m kdbench run --quick", wall_seconds=5.0)
    assert {p.name for p in paths} == {"leaderboard-quick.md", "leaderboard-quick.csv", "leaderboard-quick.json",
                                       "pareto-quick.png", "compression-quick.png", "leaderboard-quick.meta.json"}
    for name, content in full.items():
        assert (out / name).read_bytes() == content
    quick_text = (out / "leaderboard-quick.md").read_text()
    assert re.search(r"quick, reduced run.*do not cite", quick_text.split("\n## ")[0], re.I | re.S)
    assert "quick" not in (out / "leaderboard.md").read_text().lower()


def test_pareto_plot_is_a_png(report_dir):
    assert (report_dir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- marks, intervals and detectable effect against independent computations ----------------------
# Scratch scores 0.2 for every user and seed; each strategy adds a seed effect d_s and a user effect
# a_u. Then the primary test is Welch's t-test of d against -a (mean(d) + mean(a) over
# var(d) / S + var(a) / U, Welch-Satterthwaite df), and the interval of the relative change is
# Welch's interval / 0.2: scipy computes the expectations directly.
USER_EFFECT = np.array([0.02, -0.01, 0.03, 0.0, -0.02, 0.015, 0.04, -0.03, 0.005, -0.05])  # mean 0
SEED_EFFECT = {"kd": [0.050, 0.056, 0.053],  # p 1.8e-4, Holm x4: ‡
               "cd": [0.025, 0.045, 0.035],  # p 0.0078, Holm x3 = 0.023: †
               "fd": [0.015, 0.040, 0.030],  # p 0.037 < 0.05, but Holm x2 = 0.075: no mark
               "rd": [0.000, 0.020, -0.005]}  # p 0.68


@pytest.fixture(scope="module")
def marks(tmp_path_factory):
    root = tmp_path_factory.mktemp("marks")
    store = RunStore(root / "results")
    store.write("marks", PAIRING, "teacher", 0, record("teacher", 0, 0.4, dataset="marks"))
    for seed in range(3):
        store.write("marks", PAIRING, "scratch", seed, record("scratch", seed, 0.2, dataset="marks"))
        for label, effects in SEED_EFFECT.items():
            values = 0.2 + effects[seed] + USER_EFFECT
            order = np.random.default_rng([seed, len(label)]).permutation(len(USERS))
            store.write("marks", PAIRING, label, seed, record(label, seed, float(values.mean()), dataset="marks",
                                                              per_user=values, user_order=order))
    out = root / "out"
    write_reports(root / "results", out)
    return {"table": aggregate(load_runs(root / "results")), "dir": out}


def _welch(label):
    return stats.ttest_ind(np.array(SEED_EFFECT[label]), -USER_EFFECT, equal_var=False)


def _bounded_p(label):
    """The report's primary test has the seed-variance floor (issue 26): here the crossed model's
    variance is Welch's (no residual, user variance > 0, so above the seeds' alone) and the t
    quantile has seeds - 1 = 2 degrees of freedom."""
    return 2 * stats.t.sf(abs(_welch(label).statistic), 2)


def _bounded_interval(label):
    welch = _welch(label)
    mean = np.mean(SEED_EFFECT[label]) - np.mean(-USER_EFFECT)
    half = stats.t.ppf(0.975, 2) * mean / welch.statistic
    return mean - half, mean + half


def test_primary_p_values_and_holm_correction_match_independent_computation(marks):
    p = {label: _bounded_p(label) for label in SEED_EFFECT}
    for label, value in p.items():
        assert row_of(marks["table"], label, dataset="marks")["p_value_mixed"] == pytest.approx(value, rel=1e-6)
    # Holm by hand: ascending kd < cd < fd < rd, times 4, 3, 2, 1, running maximum.
    expected = {"kd": 4 * p["kd"], "cd": 3 * p["cd"], "fd": max(3 * p["cd"], 2 * p["fd"]),
                "rd": max(3 * p["cd"], 2 * p["fd"], p["rd"])}
    for label, value in expected.items():
        assert row_of(marks["table"], label, dataset="marks")["p_value_holm"] == pytest.approx(value, rel=1e-6)


def test_marks_double_single_and_removed_by_the_correction(marks):
    # With the seed-variance floor, 3 seeds and t on 2 df: kd's p 0.028 x 4 = 0.11 is no mark,
    # though its test over users alone (Welch's p 1.8e-4) would have been ‡.
    rows = {r[1]: r for r in _tables((marks["dir"] / "leaderboard.md").read_text())["marks: BPR:64 → BPR:8"]}
    assert _welch("kd").pvalue < 0.01 / 4 and 0.05 / 4 < _bounded_p("kd") < 0.05
    assert not rows["kd"][3].endswith(("†", "‡"))
    assert not rows["cd"][3].endswith(("†", "‡"))
    assert _welch("fd").pvalue < 0.05 and not rows["fd"][3].endswith(("†", "‡"))
    assert not rows["rd"][3].endswith(("†", "‡"))
    assert not rows["**scratch**"][3].endswith(("†", "‡"))


def test_relative_change_interval_matches_welchs_interval(marks, tmp_path):
    for label in SEED_EFFECT:
        low, high = _bounded_interval(label)
        row = row_of(marks["table"], label, dataset="marks")
        assert row["ndcg@10_vs_scratch_pct"] == pytest.approx(np.mean(SEED_EFFECT[label]) / 0.2 * 100)
        assert row["rel_change_ci_low"] == pytest.approx(low / 0.2 * 100, rel=1e-6)
        assert row["rel_change_ci_high"] == pytest.approx(high / 0.2 * 100, rel=1e-6)
    rows = {r[1]: r for r in _tables((marks["dir"] / "leaderboard.md").read_text())["marks: BPR:64 → BPR:8"]}
    low, high = _bounded_interval("kd")
    assert rows["kd"][4] == f"+26.5% [{low / 0.2 * 100:+.1f}, {high / 0.2 * 100:+.1f}]"  # [+7.1, +45.9]
    with open(marks["dir"] / "leaderboard.csv", newline="") as handle:
        kd = next(r for r in csv.DictReader(handle) if r["strategy"] == "kd")
    assert float(kd["rel_change_ci_low"]) == pytest.approx(low / 0.2 * 100, rel=1e-5)


def test_minimum_detectable_effect_per_pairing_matches_independent_computation(marks):
    # Components: var_seed = sample variance of d (median over the 4 strategies), var_user = var(a),
    # no residual. Power formula with Holm's first level 0.05 / 4; the seed-variance floor (issue 26)
    # leaves the variance (above the seeds' alone) and takes seeds - 1 = 2 df.
    var_seed = np.median([np.var(d, ddof=1) for d in SEED_EFFECT.values()])
    var_user = np.var(USER_EFFECT, ddof=1)
    seed_part, user_part = var_seed / 3, var_user / len(USERS)
    df = 2
    mde = (stats.t.ppf(1 - 0.05 / 8, df) + stats.t.ppf(0.8, df)) * np.sqrt(seed_part + user_part)
    effects = json.loads((marks["dir"] / "leaderboard.json").read_text())["detectable_effects"]
    found = next(e for e in effects if e["dataset"] == "marks")
    assert found["n_compared"] == 4 and found["n_seeds"] == 3 and found["n_users"] == len(USERS)
    assert found["mde_pct"] == pytest.approx(mde / 0.2 * 100, rel=1e-4)
    assert found["mde_single_pct"] < found["mde_pct"]
    assert found["mde_pct_20_seeds"] < found["mde_pct_10_seeds"] < found["mde_pct"]
    text = (marks["dir"] / "leaderboard.md").read_text()
    assert f"**±{mde / 0.2 * 100:.1f}%** of scratch's NDCG@10 with 3 seeds and 10 users" in text


# -- tuned and defaults tables --------------------------------------------------------------------


@pytest.fixture(scope="module")
def variant_dir(tmp_path_factory):
    """One pairing with a defaults table and a tuned table (3 seeds each), and the tuning summaries."""
    root = tmp_path_factory.mktemp("variants") / "results"
    store = RunStore(root)
    store.write("toy", PAIRING, "teacher", 0, record("teacher", 0, 0.40))
    values = {"scratch": [0.20, 0.22, 0.24], "kd": [0.25, 0.27, 0.26],
              "scratch@tuned": [0.24, 0.26, 0.28], "kd@tuned": [0.27, 0.29, 0.28]}
    for label, by_seed in values.items():
        for seed, value in enumerate(by_seed):
            rec = record(label, seed, value, per_user=PER_USER["scratch", seed] + (value - 0.2), day=seed + 1)
            rec["variant"] = "tuned" if label.endswith("@tuned") else "defaults"
            store.write("toy", PAIRING, label, seed, rec)
    for strategy in ("scratch", "kd"):
        path = root / "tuning" / "toy" / "BPR-64_to_BPR-8" / f"{strategy}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"dataset": "toy", "pairing": PAIRING, "strategy": strategy,
                                    "trials_counted": 12, "budget": 12}))
    return root


def test_the_tuned_table_compares_with_tuned_scratch_and_shows_budget_and_gain(variant_dir, tmp_path):
    from kdbench.report import load_tuning

    table = aggregate(load_runs(variant_dir), load_tuning(variant_dir))
    assert list(dict.fromkeys(table["variant"])) == ["tuned", "defaults"]  # the headline first
    tuned_kd = table[(table["strategy"] == "kd@tuned")].iloc[0]
    defaults_kd = table[(table["strategy"] == "kd")].iloc[0]
    # each table against its own scratch: (0.28 - 0.26) / 0.26 and (0.26 - 0.22) / 0.22
    assert tuned_kd["ndcg@10_vs_scratch_pct"] == pytest.approx(2 / 26 * 100)
    assert defaults_kd["ndcg@10_vs_scratch_pct"] == pytest.approx(4 / 22 * 100)
    assert tuned_kd["ndcg@10_tuned_vs_defaults_pct"] == pytest.approx(2 / 26 * 100)  # 0.28 vs 0.26
    assert tuned_kd["tuning_trials"] == 12 and pd_isna(defaults_kd["tuning_trials"])
    assert set(table.loc[table["family"] == "teacher", "variant"]) == {"tuned", "defaults"}  # in both tables
    write_reports(variant_dir, tmp_path)
    page = (tmp_path / "leaderboard.md").read_text()
    assert page.index("### Tuned") < page.index("### Published defaults")
    assert "**12 trials per strategy**, the same for every strategy, scratch included" in page


def pd_isna(value) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def test_a_strategy_that_trained_the_teacher_further_is_marked_and_explained(tmp_path):
    store = RunStore(tmp_path / "results")
    store.write("toy", PAIRING, "teacher", 0, record("teacher", 0, 0.40))
    for seed in range(2):
        store.write("toy", PAIRING, "scratch", seed, record("scratch", seed, NDCG["scratch", seed],
                                                            per_user=PER_USER["scratch", seed])
                    | {"teacher_trained_further": False})
        store.write("toy", PAIRING, "bd", seed, record("bd", seed, NDCG["kd", seed] + seed / 100,
                                                       per_user=PER_USER["kd", seed])
                    | {"teacher_trained_further": True})
        store.write("toy", PAIRING, "kd", seed, record("kd", seed, NDCG["kd", seed] - 0.02 * (seed + 1),
                                                       per_user=PER_USER["kd", seed] - 0.02 * (seed + 1)))  # no field
    table = aggregate(load_runs(tmp_path / "results"))
    assert row_of(table, "bd")["teacher_trained_further"] is np.True_
    assert not row_of(table, "kd")["teacher_trained_further"]
    assert not row_of(table, "scratch")["teacher_trained_further"]
    write_reports(tmp_path / "results", tmp_path / "out")
    text = (tmp_path / "out" / "leaderboard.md").read_text()
    tables = _tables(text)
    names = [r[1] for r in tables[f"toy: {PAIRING.replace('->', ' → ')}"]]
    assert names == ["**teacher (BPR:64)**", "bd ⁂", "kd", "**scratch**"]
    assert [r[1] for r in tables[f"toy: {PAIRING.replace('->', ' → ')} / cost"]] == names
    assert "⁂ after a strategy's name: the teacher was trained further during distillation (BD)" in text
    rows = list(csv.DictReader(open(tmp_path / "out" / "leaderboard.csv", newline="")))
    assert {r["strategy"]: r["teacher_trained_further"] for r in rows} == {
        "teacher": "False", "bd": "True", "kd": "False", "scratch": "False"}
