"""Records never hold absolute folders: verify warns, `verify --drop-locations` drops them, and
the identity and the cell read back stay what they were (kdbench.run.locations)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli
from kdbench.run.cells import cell_from_record
from kdbench.run.locations import absolute_fields, drop_locations
from kdbench.run.record import RunStore, stale_fields
from kdbench.commands.verify import verify

REPO = Path(__file__).resolve().parents[1]
COMMITTED = ("results/reproduction/reproduce-rcekd-citeulike/runs/citeulike-t/BPR-400_to_BPR-20/"
             "cd-student-guided/seed0.json")


def test_absolute_fields_finds_whole_paths_only():
    record = {"config": {"data_path": "/work/main/data", "other": "data", "list": ["C:\\data", "x"]},
              "error": "FileNotFoundError: /tmp/x is missing", "log": "~/cache", "n": 3}
    assert sorted(absolute_fields(record)) == [("config.data_path", "/work/main/data"),
                                               ("config.list.0", "C:\\data"), ("log", "~/cache")]
    mixed = {"per_user": {"ndcg@10": [0.5, None, 1]}, "notes": [1.0, "/srv/x", {"path": "/srv/y"}]}
    assert sorted(absolute_fields(mixed)) == [("notes.1", "/srv/x"), ("notes.2.path", "/srv/y")]


def _copy_committed(tmp_path: Path) -> Path:
    source = REPO / COMMITTED
    target = tmp_path / "results" / "runs" / Path(COMMITTED).relative_to(
        "results/reproduction/reproduce-rcekd-citeulike/runs")
    target.parent.mkdir(parents=True)
    # the record as it was stored before `verify --drop-locations` was run on the committed results:
    # this machine's absolute data folder in config.data_path, the rest byte for byte
    text = source.read_text()
    assert text.count('    "data_path": null,') == 1
    target.write_text(text.replace('    "data_path": null,', '    "data_path": "/work/main/data",'))
    return target


def test_verify_warns_and_drop_locations_changes_only_that_line(tmp_path, capsys):
    path = _copy_committed(tmp_path)
    before = path.read_text()
    record = json.loads(before)
    assert record["config"]["data_path"] == "/work/main/data"  # what 62 committed records hold
    found = verify(tmp_path / "results")
    assert len(found.locations) == 1 and "config.data_path holds an absolute folder" in found.locations[0]
    assert "--drop-locations" in found.locations[0] and not found.errors
    cell, stale = cell_from_record(record, str(path)), stale_fields(cell_from_record(record, str(path)),
                                                                      record["config"])

    code, out, _ = run_cli(capsys, "verify", "--results-dir", str(tmp_path / "results"), "--drop-locations")
    assert code == 0 and "dropped the absolute data folder of 1 run record(s)" in out
    assert "warning:" not in out
    after = path.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert changed == [('    "data_path": "/work/main/data",', '    "data_path": null,')]
    rewritten = RunStore(tmp_path / "results").load(path)
    assert cell_from_record(rewritten, str(path)) == cell  # the same cell, the same identity verdict
    assert stale_fields(cell, rewritten["config"]) == stale
    assert drop_locations([tmp_path / "results"]) == []  # nothing left to drop


def test_strict_verify_counts_an_absolute_folder_as_an_error(tmp_path, capsys):
    _copy_committed(tmp_path)
    code, out, _ = run_cli(capsys, "verify", "--results-dir", str(tmp_path / "results"), "--strict")
    assert code == 1 and "error: " in out and "holds an absolute folder ('/work/main/data')" in out
