"""A suite on a machine without some of its catalogue datasets (issue 30, item 5): the present ones
run, each absent one is named in one line with the command that fetches it, its stored runs stay in
the leaderboard, exit 0; `--strict` stops with exit 2 before anything runs. And a record names a
catalogue dataset by name and fingerprint, never by a machine's absolute folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdbench.families import BackboneSpec
from kdbench.run.cells import Cell, cell_from_record
from kdbench.run.record import base_record, identity, stale_fields
from kdbench.data.loading import check_dataset, dataset_root
from kdbench.data.offline import set_aside_missing
from kdbench.errors import KdbenchError
from kdbench.training.loop import TrainSettings

from conftest import run_cli

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "reproduction" / "reproduce-rcekd-citeulike" / "runs"
SMALL = TrainSettings(max_epochs=1, batch_size=4096)


def _cell(dataset: str, data_path: str | None = None, strategy: str = "scratch") -> Cell:
    return Cell(dataset, BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), strategy, 0, train=SMALL, data_path=data_path)


def _place(folder: Path, name: str) -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / f"{name}.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                                 + "".join(f"{u}\t{i}\t{u * 9 + i}\n" for u in range(9) for i in range(9)))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv("KDBENCH_DATA", str(folder))
    return folder


def test_cells_of_an_absent_catalogue_dataset_are_set_aside_with_the_fetch_command(data_dir, tmp_path):
    _place(tmp_path / "mine", "yelp")
    cells = [_cell("ml-100k"), _cell("citeulike-t"), _cell("citeulike-t", strategy="kd"),
             _cell("yelp", str(tmp_path / "mine")), _cell("amazon-beauty", str(tmp_path / "elsewhere")),
             _cell("toy", str(tmp_path / "absent"))]
    notes: list[str] = []
    kept = set_aside_missing(cells, note=notes.append)
    # a dataset outside the catalogue is never set aside: its missing folder stays an error
    assert [(c.dataset, c.strategy) for c in kept] == [("ml-100k", "scratch"), ("yelp", "scratch"), ("toy", "scratch")]
    assert notes == [
        f"kdbench: dataset 'citeulike-t' is not in {data_dir}: fetch it with `python -m kdbench data fetch "
        f"citeulike-t` (2 cell(s) set aside; their stored runs stay in the leaderboard)",
        f"kdbench: dataset 'amazon-beauty' is not in {tmp_path / 'elsewhere'}: fetch it with `python -m kdbench "
        f"data fetch amazon-beauty --data-path {tmp_path / 'elsewhere'}` (1 cell(s) set aside; their stored runs "
        f"stay in the leaderboard)",
    ]
    with pytest.raises(KdbenchError, match=r"'citeulike-t' is not in .*; dataset 'amazon-beauty' .* \(--strict: nothing ran\)"):
        set_aside_missing(cells, strict=True)


def test_a_catalogue_dataset_is_read_from_the_data_folder_or_refused_with_the_fetch_command(data_dir):
    with pytest.raises(KdbenchError, match=f"dataset 'foursquare' is not in {data_dir}: fetch it with "
                                           "`python -m kdbench data fetch foursquare`"):
        check_dataset("foursquare", None)
    _place(data_dir, "foursquare")
    assert dataset_root("foursquare", None) == data_dir / "foursquare"
    check_dataset("foursquare", None)
    assert dataset_root("ml-100k", None) is None  # RecBole's bundled copy, as before


def test_a_given_folder_without_the_catalogue_dataset_names_the_fetch_command(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(KdbenchError, match="fetch it with `python -m kdbench data fetch yelp --data-path "):
        check_dataset("yelp", str(tmp_path / "d"))


def test_a_record_of_a_catalogue_dataset_keeps_no_absolute_folder_and_stays_current():
    cell = _cell("citeulike-t", "/work/main/data")
    assert identity(cell, "cpu")["data_path"] is None
    assert identity(_cell("toy", "/home/me/data"), "cpu")["data_path"] == "/home/me/data"  # the user's own data
    record = base_record(cell, "cpu") | {"status": "ok", "test": {}}
    record["config"]["data_path"] = "/work/main/data"  # as the committed reproduction records hold
    rebuilt = cell_from_record(json.loads(json.dumps(record)))
    assert rebuilt.data_path is None  # reproduced from the data folder (or reproduce --data-path)
    assert stale_fields(rebuilt, record["config"]) == []  # verify: a location is not part of the identity


def _suite(tmp_path: Path, **change) -> Path:
    spec = {"name": "offline", "datasets": ["ml-100k", "citeulike-t"], "seeds": [0], "strategies": ["scratch"],
            "train": {"max_epochs": 1, "batch_size": 4096}, "pairings": [{"teacher": "BPR:8", "student": "BPR:4"}],
            **change}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.skipif(not COMMITTED.is_dir(), reason="the committed citeulike-t runs are not here")
def test_run_all_offline_runs_ml100k_names_the_absent_dataset_and_keeps_its_stored_runs(data_dir, tmp_path, capsys):
    results = tmp_path / "results"
    stored = []
    for label in ("teacher", "scratch"):
        source = COMMITTED / "citeulike-t" / "BPR-400_to_BPR-20" / label / "seed0.json"
        target = results / "runs" / "citeulike-t" / "BPR-400_to_BPR-20" / label / "seed0.json"
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
        stored.append((target, source.read_bytes()))
    code, _, err = run_cli(capsys, "run", "--suite", str(_suite(tmp_path)), "--results-dir", str(results),
                           "--cache-dir", str(tmp_path / "cache"), "--workers", "1")
    assert code == 0, err
    assert f"kdbench: dataset 'citeulike-t' is not in {data_dir}: fetch it with `python -m kdbench data fetch " \
           f"citeulike-t` (2 cell(s) set aside" in err
    assert (results / "runs" / "ml-100k" / "BPR-8_to_BPR-4" / "scratch" / "seed0.json").is_file()
    assert all(path.read_bytes() == before for path, before in stored)
    board = pd.read_csv(results / "leaderboard.csv")
    assert set(board["dataset"]) == {"ml-100k", "citeulike-t"}
    # --strict: one line, exit 2, nothing run or written
    code, out, err = run_cli(capsys, "run", "--suite", str(_suite(tmp_path)), "--results-dir", str(tmp_path / "r2"),
                             "--cache-dir", str(tmp_path / "cache"), "--strict")
    assert code == 2 and err.count("\n") == 1 and "(--strict: nothing ran)" in err
    assert not (tmp_path / "r2").exists()


def test_a_suite_with_only_absent_datasets_finishes_with_exit_0(data_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--suite", str(_suite(tmp_path, datasets=["amazon-beauty", "yelp"])),
                           "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"))
    assert code == 0, err
    assert err.count("is not in") == 2 and "data fetch amazon-beauty" in err and "data fetch yelp" in err
    assert "no tuned row" not in err  # an absent dataset is named once, not once per strategy
    assert not (tmp_path / "r" / "runs").exists()


def test_reproduce_reads_the_data_from_the_folder_given(toy_dir, tmp_path, capsys):
    """A run whose folder is gone (another machine's) is reproduced from the folder `--data-path` names."""
    from kdbench.run.runner import Runner

    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(toy_dir, first)
    shutil.copytree(toy_dir, second)
    cell = replace(_cell("toy", str(first)), train=TrainSettings(max_epochs=2, batch_size=4096))
    runner = Runner(tmp_path / "results", tmp_path / "cache")
    assert runner.run(cell)["status"] == "ok"
    path = runner.store.path(cell.dataset, cell.pairing, cell.label, cell.seed)
    shutil.rmtree(first)
    code, _, err = run_cli(capsys, "reproduce", str(path), "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and f"data path '{first}' does not exist" in err
    code, out, err = run_cli(capsys, "reproduce", str(path), "--cache-dir", str(tmp_path / "cache"),
                             "--data-path", str(second))
    assert code == 0, err
    assert "identical: ndcg@10" in out
