"""benchmarks/cell_walls.py: the old-against-new table of the README reads the run records' own figures."""

from __future__ import annotations

import json
import shutil

from benchmarks.cell_walls import cells, table
from kdbench.families import BackboneSpec
from kdbench.run.runner import Cell, Runner
from kdbench.training.loop import TrainSettings


def test_the_table_gives_each_cell_s_own_figures_and_sums_the_cells_in_both_folders(toy_dir, tmp_path):
    settings = TrainSettings(max_epochs=2, batch_size=512, learning_rate=0.01)
    made = [Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), name, seed=0, train=settings,
                 data_path=str(toy_dir)) for name in ("scratch", "kd")]
    old = tmp_path / "old"
    Runner(old, tmp_path / "cache").run_all(made)
    new = tmp_path / "new"
    shutil.copytree(old, new)
    kd_file = next(new.rglob("kd/seed0.json"))
    record = json.loads(kd_file.read_text())
    record["wall_seconds"] = 2 * record["wall_seconds"]  # a slower "new" kd cell
    kd_file.write_text(json.dumps(record))

    found = cells(old)
    assert sorted(found) == ["kd", "scratch"]  # a single run writes no teacher record
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table(old, new).splitlines()[2:9]
            if line.startswith("| ")}
    assert rows["kd"][-1].rstrip(" |") == "2.00" and rows["scratch"][-1].rstrip(" |") == "1.00"
    assert rows["scratch"][11:13] == ["1.0", "1.0"]  # epoch x scratch, old and new
    epoch = found["kd"]["training"]["seconds_per_epoch"] / found["scratch"]["training"]["seconds_per_epoch"]
    assert rows["kd"][11] == f"{epoch:.1f}"
    students_old = found["kd"]["wall_seconds"] + found["scratch"]["wall_seconds"]
    students_new = 2 * found["kd"]["wall_seconds"] + found["scratch"]["wall_seconds"]
    assert table(old, new).splitlines()[-1] == (f"Student cells in both: {students_old:.0f} s old, {students_new:.0f} s "
                                                f"new (new / old {students_new / students_old:.2f}).")
