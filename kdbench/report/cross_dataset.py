"""The answer across datasets: which strategy to use, from every tuned table of every dataset.

Input: the leaderboard's rows (`aggregate`) and runs (`load_runs`). Only the tuned tables count
(every strategy, scratch included, tuned with the same budget), so that a gain over scratch is a
gain over scratch at its best. The general and the sequential families are answered apart (their
strategies differ); a strategy enters the ranks when it has a row in every table of its family.

Per table (a dataset and pairing):
- change over tuned scratch, % with its 95% interval, and the outcome against scratch by the
  table's own primary test: a win where the Holm-adjusted p (`p_value_holm`) is below `ALPHA` and
  the change is positive, a loss where it is below `ALPHA` and negative, else a tie;
- the strategy's rank among the strategies every table has, by mean NDCG@10 (1 = best, ties share
  the average rank).

Across datasets: a dataset's rank is the mean of its tables' ranks (a dataset with two pairings
counts once), and the mean rank is the mean over datasets (Demsar, "Statistical comparisons of
classifiers over multiple data sets", JMLR 2006). Its interval is a two-level bootstrap: in every
table, `stats.rank_draws` resamples seeds and then users (the same draws for every strategy of a
table, each table its own generator seed), and each draw's mean rank is averaged like the point
value; the interval is the draws' 2.5% and 97.5% quantiles. It measures the seed and user noise of
these datasets, not how the answer would change on other datasets (with 2-5 datasets, resampling
the datasets themselves has 3-126 distinct outcomes, too few to be an interval).

The sentences (`answer_sentences`) follow fixed rules, stated there and in `CROSS_LEGEND`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from kdbench.report import stats
from kdbench.data.catalogue import CATALOGUE
from kdbench.report.schema import PRIMARY_MEAN, VS_SCRATCH
from kdbench.report.values import frame_from_json, is_compression, is_sequential
from kdbench.run.record import SCRATCH, TEACHER, TUNED

ALPHA = 0.05  # of the Holm-adjusted primary test: a win or a loss against tuned scratch
MIN_DATASETS = 2  # an answer across datasets needs at least this many
SPARSE_DENSITY = 0.005  # interactions / (users x items) below this: a sparse catalogue
GENERAL, SEQUENTIAL = "general", "sequential"
WIN, TIE, LOSS = "win", "tie", "loss"
# Datasets outside the catalogue whose statistics are known: RecBole's bundled ml-100k.
KNOWN_STATISTICS = {"ml-100k": (943, 1_682, 100_000)}
TABLE_COLUMNS = ["family", "dataset", "pairing", "strategy", "change_pct", "change_ci_low", "change_ci_high",
                 "p_value_holm", "outcome", "rank"]
SUMMARY_COLUMNS = ["family", "strategy", "n_datasets", "n_tables", "mean_rank", "mean_rank_ci_low",
                   "mean_rank_ci_high", "wins", "ties", "losses"]
_TEXT_COLUMNS = ("family", "dataset", "pairing", "strategy", "outcome")


@dataclass(frozen=True)
class CrossDataset:
    """The answer for one family (`GENERAL` or `SEQUENTIAL`)."""

    family: str
    datasets: list[str]  # in table order
    tables: pd.DataFrame  # `TABLE_COLUMNS`: one row per strategy and table
    summary: pd.DataFrame  # `SUMMARY_COLUMNS`: one row per strategy, best mean rank first
    sentences: list[str] = field(default_factory=list)  # empty with fewer than MIN_DATASETS datasets

    @property
    def enough(self) -> bool:
        return len(self.datasets) >= MIN_DATASETS

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "CrossDataset":
        """The answer as `leaderboard.json` holds it (`exports.leaderboard_payload`: missing numbers
        are null), its numbers back as numbers (NaN where null)."""
        return cls(entry["family"], list(entry["datasets"]),
                   frame_from_json(entry["tables"], TABLE_COLUMNS, _TEXT_COLUMNS),
                   frame_from_json(entry["summary"], SUMMARY_COLUMNS, _TEXT_COLUMNS),
                   list(entry.get("sentences") or []))


def density(dataset: str) -> float:
    """interactions / (users x items) of a dataset label (`name` or `name@protocol`), from the
    catalogue's statistics; NaN for a dataset whose statistics are not known."""
    name = dataset.split("@")[0]
    if name in CATALOGUE:
        users, items, interactions = CATALOGUE.get(name).statistics
    elif name in KNOWN_STATISTICS:
        users, items, interactions = KNOWN_STATISTICS[name]
    else:
        return math.nan
    return interactions / (users * items)


def outcome(change: float, p_holm: float, alpha: float = ALPHA) -> str:
    """Win, tie or loss against tuned scratch by the table's Holm-adjusted primary test."""
    if p_holm is None or not np.isfinite(p_holm) or p_holm >= alpha or not np.isfinite(change) or change == 0:
        return TIE
    return WIN if change > 0 else LOSS


def cross_dataset(table: pd.DataFrame, runs: pd.DataFrame, draws: int = stats.RANK_BOOTSTRAP_DRAWS,
                  alpha: float = ALPHA) -> list[CrossDataset]:
    """One `CrossDataset` per family with a tuned table, the general family first."""
    # the distilled students and scratch: compression rows are a table's reference rows, not answers
    tuned = table[(table["variant"] == TUNED) & (table["family"] != TEACHER) & ~table["family"].map(is_compression)]
    if tuned.empty:
        return []
    kinds = np.where([is_sequential(t) for t in tuned["teacher"]], SEQUENTIAL, GENERAL)
    answers = []
    for kind in (GENERAL, SEQUENTIAL):
        rows = tuned[kinds == kind]
        if len(rows):
            answers.append(_family_answer(kind, rows, runs, draws, alpha))
    return answers


def _family_answer(kind: str, rows: pd.DataFrame, runs: pd.DataFrame, draws: int, alpha: float) -> CrossDataset:
    keys = list(dict.fromkeys(zip(rows["dataset"], rows["pairing"])))
    by_table = {key: rows[(rows["dataset"] == key[0]) & (rows["pairing"] == key[1])] for key in keys}
    common = sorted(set.intersection(*(set(group["method"]) for group in by_table.values())))
    datasets = list(dict.fromkeys(dataset for dataset, _ in keys))
    table_rows, point, sampled = [], {}, {}
    for index, (key, group) in enumerate(by_table.items()):
        here = group[group["method"].isin(common)].set_index("method").loc[common]
        means = here[PRIMARY_MEAN].to_numpy(float)
        ranks = rankdata(np.where(np.isfinite(means), -means, np.inf), method="average")  # no seed: last
        point[key] = ranks
        sampled[key] = _table_draws(runs, key, common, draws, stats.RANK_BOOTSTRAP_SEED + index)
        for method, group_row in group.set_index("method").iterrows():
            change, p_holm = float(group_row[VS_SCRATCH]), float(group_row["p_value_holm"])
            table_rows.append({
                "family": kind, "dataset": key[0], "pairing": key[1], "strategy": method, "change_pct": change,
                "change_ci_low": group_row["rel_change_ci_low"], "change_ci_high": group_row["rel_change_ci_high"],
                "p_value_holm": p_holm, "outcome": "" if method == SCRATCH else outcome(change, p_holm, alpha),
                "rank": float(ranks[common.index(method)]) if method in common else math.nan})
    tables = pd.DataFrame(table_rows, columns=TABLE_COLUMNS)
    summary = _summary(kind, tables, common, datasets, keys, point, sampled)
    answer = CrossDataset(kind, datasets, tables, summary)
    if answer.enough:
        answer = CrossDataset(kind, datasets, tables, summary, answer_sentences(answer))
    return answer


def _table_draws(runs: pd.DataFrame, key: tuple[str, str], methods: list[str], draws: int, seed: int
                 ) -> np.ndarray | None:
    """`stats.rank_draws` of one tuned table's strategies (in `methods`' order), or None where a run
    lacks per-user values. A strategy without a finished run has no rank in any draw (NaN), as it
    ranks last in the point ranks, behind every other."""
    ok = runs[(runs["dataset"] == key[0]) & (runs["pairing"] == key[1]) & (runs["variant"] == TUNED)
              & (runs["status"] == "ok") & runs["method"].isin(methods)]
    if not len(ok) or any(u is None for u in ok["per_user"]):
        return None
    per_method = {method: dict(zip(mine["seed"], mine["per_user"]))
                  for method, mine in ok.groupby("method", sort=False)}
    present = [method for method in methods if method in per_method]
    out = np.full((len(methods), draws), np.nan)
    ranks = stats.rank_draws({method: per_method[method] for method in present}, draws=draws, seed=seed)
    out[[methods.index(method) for method in present]] = ranks
    return out


def _summary(kind: str, tables: pd.DataFrame, common: list[str], datasets: list[str], keys: list[tuple[str, str]],
             point: dict, sampled: dict) -> pd.DataFrame:
    """Per strategy: mean rank over datasets (each the mean over its tables) with its bootstrap
    interval, and wins / ties / losses over the tables."""
    def over_datasets(per_table: dict) -> np.ndarray:
        per_dataset = [np.mean([per_table[key] for key in keys if key[0] == dataset], axis=0) for dataset in datasets]
        return np.mean(per_dataset, axis=0)

    mean_rank = over_datasets(point) if common else np.array([])
    low = high = np.full(len(common), np.nan)
    if common and all(sampled[key] is not None for key in keys):
        draws = over_datasets(sampled)  # (M, B); NaN where a draw left a strategy without a seed
        low, high = np.nanquantile(draws, 0.025, axis=1), np.nanquantile(draws, 0.975, axis=1)
    rows = []
    for method, group in tables.groupby("strategy", sort=True):
        counts = group["outcome"].value_counts()
        i = common.index(method) if method in common else None
        rows.append({"family": kind, "strategy": method, "n_datasets": group["dataset"].nunique(),
                     "n_tables": len(group),
                     "mean_rank": float(mean_rank[i]) if i is not None else math.nan,
                     "mean_rank_ci_low": float(low[i]) if i is not None else math.nan,
                     "mean_rank_ci_high": float(high[i]) if i is not None else math.nan,
                     "wins": int(counts.get(WIN, 0)), "ties": int(counts.get(TIE, 0)),
                     "losses": int(counts.get(LOSS, 0))})
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return summary.sort_values(["mean_rank", "strategy"], na_position="last", kind="mergesort").reset_index(drop=True)


# -- the sentences ----------------------------------------------------------------------------------
def answer_sentences(answer: CrossDataset) -> list[str]:
    """Two or three sentences from the numbers, by these rules (also in `CROSS_LEGEND`):

    1. Best overall: the distillation strategy (not scratch) with the lowest mean rank; the others,
       scratch included, whose rank intervals overlap its interval are named as not separable from it.
    2. Consistency: the strategies with a win in every table; else the one with the most wins (or
       "none wins anywhere: tune scratch"); then the strategies with at least one loss (to avoid).
    3. Density: where both sparse (density < `SPARSE_DENSITY`) and dense datasets are present, the
       best mean rank within each group, its change over scratch across that group's tables, and
       whether that change is significant in all, some or none of them ("within noise").
    """
    ranked = answer.summary[answer.summary["mean_rank"].notna()]
    students = ranked[ranked["strategy"] != SCRATCH]
    if students.empty:
        return []
    return [_best_sentence(answer, ranked, students.iloc[0]), _consistency_sentence(answer),
            _density_sentence(answer)]


def _best_sentence(answer: CrossDataset, ranked: pd.DataFrame, best: pd.Series) -> str:
    text = (f"Across {len(answer.datasets)} datasets ({', '.join(answer.datasets)}), **{best['strategy']}** has "
            f"the best mean rank, {best['mean_rank']:.1f}")
    if not np.isfinite(best["mean_rank_ci_low"]):
        return text + " (no interval: some runs lack per-user results)."
    text += f" (95% interval {best['mean_rank_ci_low']:.1f}–{best['mean_rank_ci_high']:.1f})"
    overlapping = [r["strategy"] for _, r in ranked.iterrows() if r["strategy"] != best["strategy"]
                   and r["mean_rank_ci_low"] <= best["mean_rank_ci_high"]
                   and r["mean_rank_ci_high"] >= best["mean_rank_ci_low"]]
    if not overlapping:
        return text + "; no other strategy's interval overlaps it."
    scratch = " (tuned scratch among them: its lead over scratch is not established)" if SCRATCH in overlapping else ""
    return (text + f"; the intervals of {_names(overlapping)} overlap it, so these datasets cannot tell them "
            f"apart{scratch}.")


def _consistency_sentence(answer: CrossDataset) -> str:
    summary = answer.summary[answer.summary["strategy"] != SCRATCH]
    n_tables = answer.tables[["dataset", "pairing"]].drop_duplicates().shape[0]
    always = summary[summary["wins"] == n_tables]["strategy"].tolist()
    if always:
        verb = "beats" if len(always) == 1 else "beat"
        names = _names([f"**{name}**" for name in always])
        text = f"{names} {verb} tuned scratch significantly in every table ({n_tables})"
    elif summary["wins"].max() > 0:
        top = summary.sort_values(["wins", "mean_rank"], ascending=[False, True], kind="mergesort").iloc[0]
        text = (f"No strategy beats tuned scratch significantly in every table; {top['strategy']} does in the most "
                f"({int(top['wins'])} of {n_tables})")
    else:
        text = ("No strategy beats tuned scratch significantly in any table: on these datasets, tune scratch "
                "and skip distillation")
    losers = summary[summary["losses"] > 0]
    if len(losers):
        text += ("; significantly worse than tuned scratch in at least one table: "
                 + ", ".join(f"{r.strategy} ({r.losses})" for r in losers.itertuples(index=False)))
    return text + "."


def _density_sentence(answer: CrossDataset) -> str:
    densities = {dataset: density(dataset) for dataset in answer.datasets}
    known = [d for d, v in densities.items() if np.isfinite(v)]
    sparse = [d for d in known if densities[d] < SPARSE_DENSITY]
    dense = [d for d in known if densities[d] >= SPARSE_DENSITY]
    if not sparse or not dense:
        which = "sparse" if sparse else "dense"
        return (f"Every dataset with known statistics here is {which} (density {'<' if sparse else '≥'} "
                f"{SPARSE_DENSITY:.1%}): the comparison by density needs one of each.")
    parts = [_regime(answer, group, name) for group, name in ((sparse, "sparse"), (dense, "dense"))]
    sentence = f"{parts[0]}; {parts[1]}."
    return sentence[0].upper() + sentence[1:]


def _regime(answer: CrossDataset, datasets: list[str], name: str) -> str:
    """The best strategy by mean rank over `datasets`, its change over scratch and how significant."""
    tables = answer.tables[answer.tables["dataset"].isin(datasets) & answer.tables["rank"].notna()
                           & (answer.tables["strategy"] != SCRATCH)]
    per_dataset = tables.groupby(["strategy", "dataset"])["rank"].mean().groupby("strategy").mean()
    best = per_dataset.sort_values(kind="mergesort").index[0] if len(per_dataset) else None
    where = (f"on {name} catalogues (density {'<' if name == 'sparse' else '≥'} {SPARSE_DENSITY:.1%}: "
             f"{', '.join(datasets)})")
    if best is None:
        return f"{where} no strategy has a rank"
    mine = tables[tables["strategy"] == best]
    wins = int((mine["outcome"] == WIN).sum())
    changes = mine["change_pct"].astype(float)
    span = (f"{changes.min():+.1f}%" if len(changes) == 1 or changes.min() == changes.max()
            else f"{changes.min():+.1f}% to {changes.max():+.1f}%")
    verdict = ("significant in every table" if wins == len(mine) else
               "within noise (no significant win)" if wins == 0 else f"significant in {wins} of {len(mine)} tables")
    return f"{where} **{best}** ranks best (mean rank {per_dataset[best]:.1f}), {span} over tuned scratch, {verdict}"


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
