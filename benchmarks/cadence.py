"""Result folders of the same cells at different validation cadences (`eval_every`), as one Markdown
table (for the README's "Validation cadence").

    python -m benchmarks.cadence RESULTS_K1 RESULTS_K5 [...]

Each folder holds the runs of one `run` of the same strategies and seeds, differing only in
`--eval-every`. Per strategy and folder: the test NDCG@10 mean and standard deviation over the seeds,
the epochs run and the validation seconds summed over the seeds, and the cells' wall time summed.
Below the table, for each folder after the first: the largest |mean difference| from the first
folder in units of the first folder's seed standard deviation, each strategy's paired t-test over the
seeds both folders hold (a seed fixes the initialisation and the sampling in both, so its two runs are
a pair; `scipy.stats.ttest_rel`), and whether the strategies' order by mean is the same. Every figure
is the run records' own.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from scipy import stats

from benchmarks.cell_walls import finished_runs


def student_runs(results_dir: str | Path) -> dict[str, list[dict]]:
    """The folder's finished student runs by strategy, each list ordered by seed."""
    out: dict[str, list[dict]] = {}
    for path, record in finished_runs(results_dir):
        if path.parent.name != "teacher":
            out.setdefault(record["strategy"], []).append(record)
    return {name: sorted(runs, key=lambda r: r["seed"]) for name, runs in out.items()}


def cadence(runs: dict[str, list[dict]]) -> int:
    (value,) = {r["config"]["train"].get("eval_every", 1) for rs in runs.values() for r in rs}
    return value


def summary(records: list[dict]) -> dict[str, float]:
    ndcg = [r["test"]["ndcg@10"] for r in records]
    return {"mean": statistics.fmean(ndcg), "sd": statistics.stdev(ndcg) if len(ndcg) > 1 else float("nan"),
            "n": len(ndcg), "epochs": sum(r["training"]["epochs_run"] for r in records),
            "validation": sum(r["training"]["eval_seconds"] for r in records),
            "wall": sum(r["wall_seconds"] for r in records)}


def in_sd(difference: float, sd: float) -> float:
    """|difference| in units of sd (0 for no difference, infinite for one where the seeds agree exactly)."""
    if difference == 0:
        return 0.0
    return abs(difference) / sd if sd > 0 else float("inf")


def paired_p(first: dict[int, float], second: dict[int, float]) -> float:
    """Two-sided paired t-test p over the seeds both hold (1.0 where every pair is equal, NaN under 2 seeds)."""
    seeds = sorted(set(first) & set(second))
    if len(seeds) < 2:
        return float("nan")
    differences = [second[s] - first[s] for s in seeds]
    if all(d == differences[0] for d in differences):
        return 1.0 if differences[0] == 0 else 0.0
    return float(stats.ttest_rel([second[s] for s in seeds], [first[s] for s in seeds]).pvalue)


def table(folders: list[str | Path]) -> str:
    sides = [student_runs(folder) for folder in folders]
    names = sorted(set.intersection(*(set(side) for side in sides)))
    figures = [{name: summary(side[name]) for name in names} for side in sides]
    ks = [cadence(side) for side in sides]
    by_seed = [{name: {r["seed"]: r["test"]["ndcg@10"] for r in side[name]} for name in names} for side in sides]
    header = (["strategy"] + [f"test NDCG@10, k = {k}" for k in ks] + ["epochs run, k = " + " / ".join(map(str, ks))]
              + ["validation s, k = " + " / ".join(map(str, ks))] + ["cell wall s, k = " + " / ".join(map(str, ks))])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name in names:
        cells = [f"{f[name]['mean']:.4f} ({f[name]['sd']:.4f}, n={f[name]['n']})" for f in figures]
        for key in ("epochs", "validation", "wall"):
            cells.append(" / ".join(f"{f[name][key]:.0f}" for f in figures))
        lines.append("| " + " | ".join([name, *cells]) + " |")
    base = figures[0]
    order = sorted(names, key=lambda n: -base[n]["mean"])
    for position, (k, other) in enumerate(zip(ks[1:], figures[1:]), start=1):
        worst = max(in_sd(other[n]["mean"] - base[n]["mean"], base[n]["sd"]) for n in names)
        same = sorted(names, key=lambda n: -other[n]["mean"]) == order
        totals = [sum(f[n][key] for n in names) for f in (base, other) for key in ("wall", "validation")]
        tests = ", ".join(f"{n} {paired_p(by_seed[0][n], by_seed[position][n]):.2f}" for n in names)
        lines.append(f"\nk = {k} against k = {ks[0]}: largest |mean difference| {worst:.2f} seed sd (k = {ks[0]}'s); "
                     f"order by mean {'the same' if same else 'DIFFERENT'} ({' > '.join(order)}); cells' wall "
                     f"{totals[2]:.0f} s against {totals[0]:.0f} s, validation {totals[3]:.0f} s against "
                     f"{totals[1]:.0f} s; paired t-test p over the seeds: {tests}.")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[3].strip())
    print(table(sys.argv[1:]))
