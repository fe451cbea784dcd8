"""Issue 31: a suite's run ends with what it did (cells trained, reused, failed; its teachers) and
the top rows of each leaderboard table; a quick run names no untuned strategy (quick runs are not
tuned); a single run with the default pairing says how its settings differ from the leaderboard's."""

from __future__ import annotations

from conftest import run_cli, write_interactions
from test_malformed import suite_run as malformed_suite_run, workdir  # noqa: F401  (workdir: a fixture)

from kdbench.run.record import read_record


def suite_run(root, **spec) -> list[str]:
    """The toy suite of `test_malformed` on data large enough to train (50 users x 40 items)."""
    write_interactions(root / "data" / "toy" / "toy.inter")
    return malformed_suite_run(root, data_path=str(root / "data"), **spec)


def test_a_suite_run_ends_with_its_counts_and_each_tables_top_rows(capsys, workdir):
    argv = suite_run(workdir, strategies=["scratch", "kd"])
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0, out
    assert "3 cells: 0 reused, 3 trained, 0 failed; teachers: 1 trained, 0 reused from the cache" in out
    top = out.splitlines()[out.splitlines().index(next(l for l in out.splitlines() if l.startswith("top 3"))) + 1]
    scratch = read_record(next(workdir.glob("results/runs/toy/*/scratch/seed0.json")))["test"]["ndcg@10"]
    kd = read_record(next(workdir.glob("results/runs/toy/*/kd/seed0.json")))["test"]["ndcg@10"]
    teacher = read_record(next(workdir.glob("results/runs/toy/*/teacher/seed0.json")))["test"]["ndcg@10"]
    first, second = sorted([("kd", kd), ("scratch", scratch)], key=lambda item: -item[1])
    assert top.startswith(f"  toy BPR:16->BPR:4 (defaults): 1. {first[0]} {first[1]:.4f}")
    assert f"2. {second[0]} {second[1]:.4f}" in top and top.endswith(f"; teacher {teacher:.4f}")
    change = (kd - scratch) / scratch * 100
    assert f"kd {kd:.4f} ({change:+.1f}%)" in top  # scratch's own row has no change

    code, out, _ = run_cli(capsys, *argv)  # everything is finished: nothing trains, nothing is needed
    assert code == 0
    assert "3 cells: 3 reused, 0 trained, 0 failed; teachers: none needed" in out


def test_a_failed_cell_counts_as_failed_not_trained(capsys, workdir, monkeypatch):
    import kdbench.run.work

    def fails(task):
        raise RuntimeError("boom")

    monkeypatch.setattr(kdbench.run.work, "_train_student", fails)
    code, out, _ = run_cli(capsys, *suite_run(workdir), "--workers", "1")  # in this process: the stand-in runs
    assert code == 1
    assert "2 cells: 0 reused, 1 trained, 1 failed; teachers: 1 trained, 0 reused from the cache" in out
    assert "toy BPR:16->BPR:4 (defaults): no finished student; teacher " in out


def test_a_quick_run_names_no_untuned_strategy_and_a_full_run_does(capsys, workdir):
    code, _, err = run_cli(capsys, *suite_run(workdir, quick={"seeds": [0]}), "--quick")
    assert code == 0
    assert "no tuned row" not in err
    code, _, err = run_cli(capsys, *suite_run(workdir, quick={"seeds": [0]}))
    assert code == 0
    assert "toy BPR:16->BPR:4 scratch: not tuned; no tuned row" in err


def test_the_single_run_default_pairing_names_the_flags_that_give_the_leaderboards_cells():
    import shlex

    from kdbench.cli import _train_settings, build_parser
    from kdbench.commands.run import leaderboard_note
    from kdbench.run.suites import expand, load_suite
    from kdbench.training.loop import TrainSettings

    note = leaderboard_note("ml-100k", "BPR:200", "BPR:20", TrainSettings(), TrainSettings())
    assert note.startswith("note: these settings (BPR:200->BPR:20, student lr 0.001, max epochs 300) are not "
                           "the leaderboard's (BPR:64->BPR:5, student lr 0.005, max epochs 400)")
    flags = note.split("for its settings run with ")[1]
    args = build_parser().parse_args(["run", *shlex.split(flags)])
    suite_cell = next(c for c in expand(load_suite(None), ["scratch"], sweeps=False) if c.pairing == "BPR:64->BPR:5")
    assert (args.teacher, args.student) == ("BPR:64", "BPR:5")
    assert _train_settings(args) == suite_cell.train  # the flags give the leaderboard's cell exactly
    assert _train_settings(args, "teacher_") == suite_cell.teacher_settings
    # with those settings, another dataset, or a pairing of the user's own: nothing to say
    assert leaderboard_note("ml-100k", "BPR:64", "BPR:5", suite_cell.train, suite_cell.teacher_settings) is None
    assert leaderboard_note("toy", "BPR:200", "BPR:20", TrainSettings(), TrainSettings()) is None
    assert leaderboard_note("ml-100k", "BPR:32", "BPR:4", TrainSettings(), TrainSettings()) is None
    # the leaderboard's pairing with other settings names the missing flags only
    assert leaderboard_note("ml-100k", "BPR:64", "BPR:5", TrainSettings(), TrainSettings()).endswith(
        "for its settings run with --lr 0.005 --epochs 400")
