"""The answer across datasets (kdbench.report.cross_dataset): ranks, outcomes, intervals, sentences,
on synthetic tuned runs of four datasets with known effects."""

from __future__ import annotations

import html
import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest

from kdbench.report import stats
from kdbench.run.record import RunStore
from kdbench.report import aggregate, load_runs, write_reports
from kdbench.report.cross_dataset import cross_dataset, density, outcome

N_USERS, SEEDS = 40, (0, 1, 2)
PAIRING = "BPR:64->BPR:8"
SPARSE = ("citeulike-t", "amazon-beauty", "yelp")  # catalogue densities 0.10%, 0.07%, 0.05%
DENSE = "ml-100k"  # 6.3%
# Effect on every user's NDCG@10 over scratch: `good` helps everywhere, `sparse` on the sparse
# catalogues only (on ml-100k it equals scratch user by user), `twin` is scratch, `bad` hurts.
EFFECTS = {"scratch": {}, "twin": {}, "good": dict.fromkeys((*SPARSE, DENSE), 0.05),
           "sparse": dict.fromkeys(SPARSE, 0.10), "bad": dict.fromkeys((*SPARSE, DENSE), -0.05)}


def _record(dataset: str, method: str, seed: int, values: np.ndarray) -> dict:
    mean = float(values.mean())
    return {
        "dataset": dataset, "teacher": "BPR:64", "student": "BPR:8", "pairing": PAIRING, "model": "BPR:8",
        "strategy": method, "label": f"{method}@tuned", "variant": "tuned",
        "family": "baseline" if method == "scratch" else "response", "seed": seed, "status": "ok",
        "environment": {"cpu": "Test CPU", "threads": "1"}, "created": "2025-01-01T10:00:00+00:00",
        "wall_seconds": 10.0,
        "test": {"ndcg@10": mean, "ndcg@20": mean, "recall@10": mean, "recall@20": mean},
        "per_user": {"user_ids": list(range(N_USERS)), "ndcg@10": [float(v) for v in values]},
        "cost": {"params": 800, "size_bytes": 3200},
        "training": {"best_epoch": 5, "epochs_run": 10, "hit_epoch_cap": False, "seconds_per_epoch": 1.0,
                     "train_seconds": 8.0, "eval_seconds": 1.0, "kd_prepare_seconds": 0.0},
    }


def write_runs(root, datasets) -> None:
    store = RunStore(root)
    rng = np.random.default_rng(3)
    for dataset in datasets:
        base = rng.uniform(0.1, 0.5, N_USERS)
        for seed in SEEDS:
            scratch = np.round(base + rng.normal(0, 0.01, N_USERS), 6)
            for method, effects in EFFECTS.items():
                values = np.round(scratch + effects.get(dataset, 0.0), 6)
                store.write(dataset, PAIRING, f"{method}@tuned", seed, _record(dataset, method, seed, values))
            failed = _record(dataset, "broken", seed, scratch) | {"status": "failed", "error": "RuntimeError: NaN"}
            store.write(dataset, PAIRING, "broken@tuned", seed, failed)  # every seed failed: ranked last


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("cross") / "results"
    write_runs(root, (*SPARSE, DENSE))
    return root


@pytest.fixture(scope="module")
def answer(results):
    runs = load_runs(results)
    answers = cross_dataset(aggregate(runs), runs, draws=400)
    assert [a.family for a in answers] == ["general"]
    return answers[0]


def test_density_comes_from_the_catalogue_statistics():
    assert density("citeulike-t") == pytest.approx(125_580 / (5_219 * 25_181))
    assert density("ml-100k@leave-one-out") == pytest.approx(100_000 / (943 * 1_682))
    assert np.isnan(density("my-own-data"))


def test_outcome_is_the_holm_test_with_the_sign_of_the_change():
    assert outcome(3.0, 0.01) == "win" and outcome(-3.0, 0.049) == "loss"
    assert outcome(3.0, 0.05) == "tie" and outcome(-3.0, float("nan")) == "tie"


def test_clearly_better_strategy_ranks_first_everywhere_and_wins_every_table(answer):
    summary = answer.summary.set_index("strategy")
    good = summary.loc["good"]
    assert (good["wins"], good["ties"], good["losses"]) == (4, 0, 0)
    bad = summary.loc["bad"]
    assert (bad["wins"], bad["ties"], bad["losses"]) == (0, 0, 4)
    # ranks among the 6 strategies (broken, no finished run, last: 6): sparse catalogues sparse 1, good 2,
    # scratch/twin 3.5, bad 5; ml-100k good 1, then scratch, twin and sparse identical: 3 each, bad 5
    ranks = answer.tables.set_index(["strategy", "dataset"])["rank"]
    assert ranks["good", "yelp"] == 2 and ranks["good", DENSE] == 1
    assert ranks["twin", "yelp"] == ranks["scratch", "yelp"] == 3.5
    assert ranks["sparse", DENSE] == ranks["scratch", DENSE] == 3
    assert summary.loc["sparse", "mean_rank"] == pytest.approx((1 + 1 + 1 + 3) / 4)
    assert summary.loc["good", "mean_rank"] == pytest.approx((2 + 2 + 2 + 1) / 4)
    assert summary.loc["bad", "mean_rank"] == 5
    assert list(answer.summary["strategy"])[:2] == ["sparse", "good"]
    assert summary.loc["broken", "mean_rank"] == 6 and np.isnan(summary.loc["broken", "mean_rank_ci_low"])
    assert (summary.loc["broken", "wins"], summary.loc["broken", "ties"]) == (0, 4)


def test_identical_strategies_tie_and_share_their_rank_in_every_bootstrap_draw(answer):
    summary = answer.summary.set_index("strategy")
    twin = summary.loc["twin"]
    assert (twin["wins"], twin["ties"], twin["losses"]) == (0, 4, 0)
    assert twin["mean_rank"] == summary.loc["scratch", "mean_rank"]
    assert twin["mean_rank_ci_low"] == summary.loc["scratch", "mean_rank_ci_low"]
    assert twin["mean_rank_ci_high"] == summary.loc["scratch", "mean_rank_ci_high"]
    # effects far above the noise: the bootstrap never reorders good and bad
    assert summary.loc["bad", "mean_rank_ci_low"] == summary.loc["bad", "mean_rank_ci_high"] == 5
    assert summary.loc["good", "mean_rank_ci_high"] < summary.loc["twin", "mean_rank_ci_low"]


def test_sentences_follow_the_stated_rules(answer):
    best, consistency, by_density = answer.sentences
    assert best.startswith("Across 4 datasets") and "**sparse** has the best mean rank, 1.5" in best
    assert "tuned scratch among them" not in best  # scratch's interval is far from the lead
    assert consistency.startswith("**good** beats tuned scratch significantly in every table (4)")
    assert "significantly worse than tuned scratch in at least one table: bad (4)" in consistency
    sparse_part, dense_part = by_density.split("; ")
    assert sparse_part.startswith("On sparse catalogues") and "**sparse** ranks best (mean rank 1.0)" in sparse_part
    assert "significant in every table" in sparse_part
    assert "dense catalogues" in dense_part and "**good** ranks best (mean rank 1.0)" in dense_part


def test_one_dataset_says_it_needs_two_and_shows_what_exists(tmp_path):
    root = tmp_path / "results"
    write_runs(root, (DENSE,))
    runs = load_runs(root)
    (answer,) = cross_dataset(aggregate(runs), runs, draws=100)
    assert not answer.enough and answer.sentences == []
    out = tmp_path / "out"
    write_reports(root, out, plot=False)
    page = (out / "leaderboard.md").read_text()
    section = page[page.index("## The answer across datasets"):page.index("## ml-100k")]
    assert "Needs tuned tables on at least 2 datasets" in section and "today: ml-100k only" in section
    assert "| good " in section and "What to use" not in section
    payload = json.loads((out / "leaderboard.json").read_text())
    assert payload["cross_dataset"][0]["datasets"] == [DENSE]


def test_the_section_opens_the_page_with_its_sentences(results, tmp_path):
    write_reports(results, tmp_path, plot=False)
    page = (tmp_path / "leaderboard.md").read_text()
    assert page.index("## The answer across datasets") < page.index("## amazon-beauty")
    assert "What to use (generated from the table by the rules below):" in page
    assert "| good " in page and "▲" in page and "▼" in page
    payload = json.loads((tmp_path / "leaderboard.json").read_text())
    assert len(payload["cross_dataset"][0]["sentences"]) == 3


def markdown_body(text: str, first_header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose first header is `first_header`, as raw cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header}"))
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in itertools.takewhile(lambda line: line.startswith("|"), lines[start + 2:])]


def markdown_cells(text: str, first_header: str) -> list[list[str]]:
    """That table's body rows as cell texts (Markdown's bold left out)."""
    return [[cell.replace("**", "") for cell in row] for row in markdown_body(text, first_header)]


def markdown_strong(text: str, first_header: str) -> list[bool]:
    """Per body row of that table: whether it is shown in bold (its first cell)."""
    return [row[0].startswith("**") for row in markdown_body(text, first_header)]


def html_body(section: str) -> list[tuple[str, str]]:
    """The body rows of the first table in a page section: (the <tr>'s attributes, its inner HTML)."""
    body = re.search(r"<tbody>(.*?)</tbody>", section, re.S).group(1)
    return re.findall(r"<tr([^>]*)>(.*?)</tr>", body)


def html_cells(section: str) -> list[list[str]]:
    """Those rows as cell texts."""
    return [[html.unescape(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
            for _, row in html_body(section)]


def html_strong(section: str) -> list[bool]:
    """Per body row: whether it is shown in bold."""
    return [attributes == ' class="strong"' for attributes, _ in html_body(section)]


def test_the_page_shows_the_same_answer_above_its_table(results, tmp_path):
    write_reports(results, tmp_path, plot=False)
    page = (tmp_path / "index.html").read_text()
    section = re.search(r'<section id="answer".*?</section>', page, re.S).group(0)
    assert page.index('<section id="answer"') < page.index('id="controls"') < page.index('<section id="compute"')
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert html_cells(section) == markdown_cells(markdown, "strategy ")  # the same rows, cell for cell
    strong = html_strong(section)  # and the same row in bold: scratch's
    assert strong == markdown_strong(markdown, "strategy ") and sum(strong) == 1
    assert html_cells(section)[strong.index(True)][0] == "scratch"
    sentences = json.loads((tmp_path / "leaderboard.json").read_text())["cross_dataset"][0]["sentences"]
    items = re.findall(r"<li>(.*?)</li>", section)
    assert len(items) == len(sentences) == 3
    for item, sentence in zip(items, sentences):  # Markdown's bold as <strong>, the rest as written
        assert html.unescape(re.sub(r"</?strong>", "**", item)) == sentence
    assert "<strong>sparse</strong>" in items[0]


def test_no_tuned_tables_no_answer():
    empty = pd.DataFrame(columns=["variant", "family", "teacher"])
    assert cross_dataset(empty, pd.DataFrame()) == []


def test_rank_draws_share_ties_and_are_deterministic():
    users = pd.Index(range(20))
    rng = np.random.default_rng(0)
    base = {seed: pd.Series(rng.uniform(0, 1, 20), index=users) for seed in range(3)}
    runs = {"a": {s: v + 1.0 for s, v in base.items()}, "b": base, "c": dict(base)}
    draws = stats.rank_draws(runs, draws=300, seed=5, chunk=70)
    assert draws.shape == (3, 300)
    assert (draws[0] == 1).all() and (draws[1] == 2.5).all() and (draws[2] == 2.5).all()
    np.testing.assert_array_equal(draws, stats.rank_draws(runs, draws=300, seed=5, chunk=70))


def test_two_sparse_datasets_give_an_answer_and_say_the_density_split_needs_a_dense_one(tmp_path):
    root = tmp_path / "results"
    write_runs(root, SPARSE[:2])
    runs = load_runs(root)
    (answer,) = cross_dataset(aggregate(runs), runs, draws=200)
    assert answer.enough and answer.datasets == ["amazon-beauty", "citeulike-t"]
    summary = answer.summary.set_index("strategy")
    assert summary.loc["sparse", "mean_rank"] == 1 and summary.loc["sparse", "wins"] == 2
    best, consistency, by_density = answer.sentences
    assert "**sparse** has the best mean rank, 1.0" in best
    assert consistency.startswith("**sparse** and **good** beat tuned scratch significantly in every table (2)")
    assert by_density == ("Every dataset with known statistics here is sparse (density < 0.5%): the comparison "
                          "by density needs one of each.")


def test_a_strategy_missing_from_a_table_is_named_and_left_out_of_the_ranks(tmp_path):
    """While a grid runs, a dataset's tuned table may lack strategies the others have: they get no
    mean rank, and the section names them instead of ranking them on fewer tables."""
    root = tmp_path / "results"
    write_runs(root, SPARSE[:2])
    for path in (root / "runs" / "citeulike-t").rglob("good@tuned/*.json"):
        path.unlink()
    runs = load_runs(root)
    (answer,) = cross_dataset(aggregate(runs), runs, draws=100)
    summary = answer.summary.set_index("strategy")
    assert np.isnan(summary.loc["good", "mean_rank"]) and summary.loc["sparse", "mean_rank"] == 1
    assert not any("**good**" in sentence for sentence in answer.sentences)
    out = tmp_path / "out"
    write_reports(root, out, plot=False)
    page = (out / "leaderboard.md").read_text()
    assert "Not in every table yet, so without a rank and left out of the sentences: good." in page
