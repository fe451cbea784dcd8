"""The size sweep: scratch cells at every size (the largest the reference), for general and sequential
backbones, and its table and files."""

from __future__ import annotations

import pytest

from conftest import run_cli, write_interactions
from kdbench.families import DEFAULT_PROTOCOL
from kdbench.families.sequential import LEAVE_ONE_OUT
from kdbench.errors import KdbenchError
from kdbench.run.sweep import sweep_cells, sweep_name, sweep_table
from kdbench.training.loop import TrainSettings
from test_cli import workdir  # noqa: F401  (the fixture)


def test_a_sequential_sweep_keeps_the_shape_options_and_runs_under_leave_one_out():
    cells = sweep_cells("ml-100k", "SASRec:L1H1", [8, 32, 16], [0, 1], TrainSettings())
    assert [(str(c.student), c.seed) for c in cells] == [
        ("SASRec:32:L1H1", 0), ("SASRec:32:L1H1", 1), ("SASRec:16:L1H1", 0), ("SASRec:16:L1H1", 1),
        ("SASRec:8:L1H1", 0), ("SASRec:8:L1H1", 1)]
    assert {str(c.teacher) for c in cells} == {"SASRec:32:L1H1"}
    assert {c.protocol for c in cells} == {LEAVE_ONE_OUT}
    assert {c.strategy for c in cells} == {"scratch"}
    assert {c.protocol for c in sweep_cells("ml-100k", "BPR", [5, 64], [0], TrainSettings())} == {DEFAULT_PROTOCOL}
    assert (sweep_name("sasrec:l1h1"), sweep_name("BPR"), sweep_name("GRU4Rec")) == ("SASRec-L1H1", "BPR", "GRU4Rec")


def test_a_sweep_size_the_heads_do_not_divide_is_refused():
    with pytest.raises(KdbenchError, match="multiple of the number of heads"):
        sweep_cells("ml-100k", "SASRec", [64, 5], [0], TrainSettings())  # RecBole's default 2 heads


def test_the_table_gives_each_size_its_mean_over_seeds_and_share_of_the_largest():
    def record(student, seed, ndcg):
        return {"status": "ok", "student": student, "seed": seed, "test": {"ndcg@10": ndcg, "recall@10": 2 * ndcg},
                "cost": {"params": 10}, "training": {"best_epoch": 3, "hit_epoch_cap": seed == 1}}

    table = sweep_table([record("SASRec:8:L1H1", 0, 0.02), record("SASRec:8:L1H1", 1, 0.04),
                         record("SASRec:32:L1H1", 0, 0.05), record("SASRec:32:L1H1", 1, 0.07),
                         {"status": "failed", "student": "SASRec:16:L1H1"}])
    assert table["dim"].tolist() == [32, 8]
    assert table["ndcg10_mean"].tolist() == pytest.approx([0.06, 0.03])
    assert table["share_of_largest_%"].tolist() == pytest.approx([100.0, 50.0])
    assert table["capped"].tolist() == [1, 1]


def test_the_sweep_command_runs_a_sequential_shape_and_writes_its_table(capsys, workdir, tmp_path):  # noqa: F811
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    code, out, err = run_cli(capsys, "sweep", "--dataset", "toy", "--data-path", str(tmp_path / "data"),
                             "--model", "SASRec:L1H1", "--dims", "8,4", "--seeds", "0", "--epochs", "1",
                             "--workers", "1")
    assert code == 0, err
    table = (workdir / "results" / "size_sweep_toy_SASRec-L1H1.md").read_text()
    assert "protocol leave-one-out" in table and "SASRec:4:L1H1" in table and "SASRec:8:L1H1" in table
    runs = workdir / "results" / "sweep" / "runs" / "toy@leave-one-out"
    assert sorted(str(p.relative_to(runs)) for p in runs.rglob("*.json")) == [
        "SASRec-8-L1H1_to_SASRec-4-L1H1/scratch/seed0.json", "SASRec-8-L1H1_to_SASRec-8-L1H1/scratch/seed0.json"]
    # the largest size is the reference: its nominal teacher (the same model once more) is not trained
    assert not (workdir / "cache" / "teachers").exists()
    assert "teacher_test" not in (runs / "SASRec-8-L1H1_to_SASRec-4-L1H1" / "scratch" / "seed0.json").read_text()
    code, out, _ = run_cli(capsys, "reproduce", str(runs / "SASRec-8-L1H1_to_SASRec-4-L1H1" / "scratch" / "seed0.json"),
                           "--data-path", str(tmp_path / "data"))
    assert code == 0, out
    assert "identical: ndcg@10" in out and "not needed" in out and not (workdir / "cache" / "teachers").exists()


def test_a_sweep_reuses_its_runs_refuses_other_settings_and_redoes_them_with_force(capsys, workdir, tmp_path):  # noqa: F811
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    base = ["sweep", "--dataset", "toy", "--data-path", str(tmp_path / "data"), "--dims", "8,4", "--seeds", "0",
            "--epochs", "1", "--workers", "1"]
    assert run_cli(capsys, *base)[0] == 0
    run = workdir / "results" / "sweep" / "runs" / "toy" / "BPR-8_to_BPR-4" / "scratch" / "seed0.json"
    first = run.read_bytes()
    assert run_cli(capsys, *base)[0] == 0 and run.read_bytes() == first  # resumed: nothing retrained
    code, _, err = run_cli(capsys, *base, "--lr", "0.01")
    assert code == 2 and "holds a finished run with other settings; pass --force" in err
    assert run.read_bytes() == first
    assert run_cli(capsys, *base, "--lr", "0.01", "--force")[0] == 0
    assert '"learning_rate": 0.01' in run.read_text()
    redone = run.read_bytes()
    code, _, err = run_cli(capsys, *base, "--replace-stale")  # the lr 0.001 cells again, only those
    assert code == 0, err
    assert '"learning_rate": 0.001' in run.read_text() and run.read_bytes() != redone
