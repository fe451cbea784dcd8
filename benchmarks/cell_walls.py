"""Two result folders of the same cells, old code against new, as one Markdown table (for the README).

    python -m benchmarks.cell_walls OLD_RESULTS NEW_RESULTS

Each folder holds the runs of one `run` or `reproduce` of the same cells (same settings, seed and
data), made by two versions of kdbench side by side on one machine (one process and one thread
each, so both see the same load). Every figure is the run record's own: `wall_seconds`, and from its
`training` block the validation seconds (`eval_seconds`), the training seconds, the epochs run and
the seconds per training epoch; `x scratch` divides an epoch by the scratch cell's epoch of the same
folder. The last line sums the student cells present in both folders.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

from kdbench.run.record import RunStore

COLUMNS = ("wall", "validation", "training", "epochs", "s/epoch", "epoch x scratch", "test NDCG@10")


def finished_runs(results_dir: str | Path) -> Iterator[tuple[Path, dict]]:
    """(path, record) of every finished run under the folder, wherever it lies, in path order."""
    for path in sorted(Path(results_dir).rglob("seed*.json")):
        root = next(folder.parent for folder in path.parents if folder.name == "runs")
        record = RunStore(root).load(path)
        if record.get("status") == "ok":
            yield path, record


def cells(results_dir: str | Path) -> dict[str, dict]:
    """The folder's finished runs by label (`teacher` for the teacher's own run), wherever they lie."""
    return {"teacher" if path.parent.name == "teacher" else record["strategy"]: record
            for path, record in finished_runs(results_dir)}


def figures(record: dict, scratch_epoch: float | None) -> list[str]:
    training = record["training"]
    epoch = training["seconds_per_epoch"]
    return [f"{record['wall_seconds']:.0f} s", f"{training['eval_seconds']:.0f} s", f"{training['train_seconds']:.0f} s",
            str(training["epochs_run"]), f"{epoch:.2f}", f"{epoch / scratch_epoch:.1f}" if scratch_epoch else "-",
            f"{record['test']['ndcg@10']:.4f}"]


def table(old_dir: str | Path, new_dir: str | Path) -> str:
    old, new = cells(old_dir), cells(new_dir)
    scratch = {side: runs["scratch"]["training"]["seconds_per_epoch"] if "scratch" in runs else None
               for side, runs in (("old", old), ("new", new))}
    header = ["cell"] + [f"{column} {side}" for column in COLUMNS for side in ("old", "new")] + ["wall new / old"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    total_old = total_new = 0.0
    for name in sorted(set(old) | set(new), key=lambda n: (n == "teacher", n)):
        sides = [figures(runs[name], scratch[side]) if name in runs else ["-"] * len(COLUMNS)
                 for side, runs in (("old", old), ("new", new))]
        both = name in old and name in new
        ratio = f"{new[name]['wall_seconds'] / old[name]['wall_seconds']:.2f}" if both else "-"
        if both and name != "teacher":
            total_old += old[name]["wall_seconds"]
            total_new += new[name]["wall_seconds"]
        lines.append("| " + " | ".join([name] + [v for pair in zip(*sides) for v in pair] + [ratio]) + " |")
    if total_old:
        lines.append(f"\nStudent cells in both: {total_old:.0f} s old, {total_new:.0f} s new "
                     f"(new / old {total_new / total_old:.2f}).")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    print(table(sys.argv[1], sys.argv[2]))
