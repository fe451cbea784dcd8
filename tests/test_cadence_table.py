"""benchmarks/cadence.py: the README's cadence table reads the run records' own figures."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from benchmarks.cadence import paired_p, student_runs, table
from kdbench.families import BackboneSpec
from kdbench.run.runner import Cell, Runner
from kdbench.training.loop import TrainSettings


def test_the_table_gives_each_cadence_s_seed_mean_and_spread_and_compares_them(toy_dir, tmp_path):
    folders = []
    for k in (1, 2):
        settings = TrainSettings(max_epochs=4, batch_size=512, learning_rate=0.01, eval_every=k)
        cells = [Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), name, seed=seed, train=settings,
                      data_path=str(toy_dir)) for name in ("scratch", "kd") for seed in (0, 1)]
        Runner(tmp_path / f"k{k}", tmp_path / "cache").run_all(cells)
        folders.append(tmp_path / f"k{k}")
    runs = [student_runs(folder) for folder in folders]
    assert {name: [r["seed"] for r in rs] for name, rs in runs[1].items()} == {"kd": [0, 1], "scratch": [0, 1]}
    text = table(folders)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in text.splitlines()[2:4]}
    for position, side in enumerate(runs, start=1):
        ndcg = [r["test"]["ndcg@10"] for r in side["kd"]]
        assert rows["kd"][position] == f"{statistics.fmean(ndcg):.4f} ({statistics.stdev(ndcg):.4f}, n=2)"
    epochs = [sum(r["training"]["epochs_run"] for r in side["scratch"]) for side in runs]
    assert rows["scratch"][3] == f"{epochs[0]} / {epochs[1]}"
    base = {name: [r["test"]["ndcg@10"] for r in rs] for name, rs in runs[0].items()}
    other = {name: [r["test"]["ndcg@10"] for r in rs] for name, rs in runs[1].items()}
    worst = max(abs(statistics.fmean(other[n]) - statistics.fmean(base[n])) / statistics.stdev(base[n]) for n in base)
    assert f"k = 2 against k = 1: largest |mean difference| {worst:.2f} seed sd" in text.splitlines()[-1]
    pairs = {n: ([r["test"]["ndcg@10"] for r in runs[0][n]], [r["test"]["ndcg@10"] for r in runs[1][n]]) for n in base}
    expected = ", ".join(f"{n} {paired_p(dict(enumerate(a)), dict(enumerate(b))):.2f}" for n, (a, b) in sorted(pairs.items()))
    assert text.splitlines()[-1].endswith(f"paired t-test p over the seeds: {expected}.")


def test_the_paired_test_is_scipy_s_over_the_common_seeds():
    first, second = {0: 0.10, 1: 0.12, 2: 0.11, 7: 0.5}, {0: 0.11, 1: 0.125, 2: 0.13}
    assert paired_p(first, second) == pytest.approx(stats.ttest_rel([0.11, 0.125, 0.13], [0.10, 0.12, 0.11]).pvalue)
    assert paired_p({0: 0.1, 1: 0.2}, {0: 0.1, 1: 0.2}) == 1.0
    assert math.isnan(paired_p({0: 0.1}, {0: 0.2}))
