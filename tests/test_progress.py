"""Issue 31: a training teacher shows its epochs and validation NDCG@10 on the progress bar, from
the driver's process and from a local worker process alike."""

from __future__ import annotations

from kdbench import progress
from kdbench.run.cells import Cell
from kdbench.executors import LocalExecutor
from kdbench.families import BackboneSpec
from kdbench.run.runner import Runner
from kdbench.training.loop import TrainSettings


def _reports(lines):
    for line in lines:
        progress.report(line)
    return len(lines)


def test_a_worker_process_s_progress_lines_reach_the_driver_in_order():
    seen: list[str] = []
    executor = LocalExecutor(1)
    try:
        with progress.sink(seen.append):
            results = dict(executor.map_unordered(_reports, [["a 1", "a 2"], ["b 1"]]))
    finally:
        executor.close()
    assert results == {0: 2, 1: 1}
    assert seen == ["a 1", "a 2", "b 1"]


def test_without_a_sink_a_progress_line_goes_nowhere_and_a_failing_sink_fails_nothing():
    progress.report("nobody listens")
    with progress.sink(lambda line: 1 / 0):
        progress.report("a broken bar")


def test_a_teacher_reports_every_epoch_with_its_validation_ndcg(toy_dir, tmp_path):
    cell = Cell("toy", BackboneSpec("BPR", 8), BackboneSpec("BPR", 4), "teacher", seed=0,
                train=TrainSettings(max_epochs=4, batch_size=4096, eval_every=2), data_path=str(toy_dir))
    seen: list[str] = []
    with progress.sink(seen.append):
        record = Runner(tmp_path / "results", tmp_path / "cache").run(cell)
    assert record["status"] == "ok"
    assert [line.split(",")[0] for line in seen] == [f"teacher BPR:8 epoch {e}/4" for e in (1, 2, 3, 4)]
    curve = dict(record["training"]["valid_curve"])
    assert seen[1] == f"teacher BPR:8 epoch 2/4, valid NDCG@10 {curve[2]:.4f} (best {curve[2]:.4f})"
    assert seen[3].endswith(f"valid NDCG@10 {curve[4]:.4f} (best {max(curve.values()):.4f})")
