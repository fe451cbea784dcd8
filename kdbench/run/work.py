"""What a worker runs: a teacher cell -> its trained weights, a student cell -> its run record.

These are plain functions of their task (a picklable dataclass), so the same code runs in the
driver's process, in a local worker process or as a Ray task. A worker never writes result or
cache files: it returns the record, the cell's log text and (for a teacher) the weights, and the
driver writes them. Each task fixes its own intra-op thread count (`Cell.threads`) and seeds, so
its result does not depend on which worker ran it or on what that worker ran before.
"""

from __future__ import annotations

import io
import logging
import time
import traceback
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from kdbench.backbones import DEPLOYED, build_model, recbole_model_class
from kdbench.run.cells import Cell
from kdbench.evaluation.compressed_cost import cell_targets, compressed_name
from kdbench.data.loading import PreparedData
from kdbench.errors import KdbenchError
from kdbench.evaluation.beyond import BEYOND_K, TAIL_RATIO, beyond_accuracy, item_counts, user_train_counts
from kdbench.evaluation.evaluator import full_ranking, inference_cost
from kdbench.families import BackboneSpec, family_of, load_data
from kdbench import progress
from kdbench.run.record import RunRecord, base_record, failed_record, identity
from kdbench.strategies import STRATEGIES
from kdbench.run.subsample import FULL_SHARE, subsample_training
from kdbench.strategies.shared_knowledge import share_teacher
from kdbench.training.teacher_file import (FileTeacherAdapter, check_against_split, content_hash, is_file_teacher,
                                  read_teacher_file)
from kdbench.training.loop import FitResult, TrainSettings, fit
from kdbench.training.resume import EpochCheckpoint, run_key
from kdbench.training.trajectory import TrajectoryRecorder, content_digest, from_bytes, to_bytes

LOGGER = "kdbench"


@dataclass(frozen=True)
class TeacherArtifact:
    """A trained teacher: its weights as `torch.save` bytes (loaded with weights_only=True, so they
    can never run code) and the teacher row's record."""

    key: str
    weights: bytes = field(repr=False)
    meta: dict[str, Any] = field(repr=False)
    trajectory: bytes = field(default=b"", repr=False)  # `kdbench.training.trajectory`, when one was asked for

    @classmethod
    def from_state(cls, key: str, state: dict[str, torch.Tensor], meta: dict[str, Any],
                   trajectory: bytes = b"") -> "TeacherArtifact":
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
        return cls(key, buffer.getvalue(), meta, trajectory)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return torch.load(io.BytesIO(self.weights), map_location="cpu", weights_only=True)

    @property
    def trajectory_digest(self) -> str:
        """The trajectory's `content_digest`; "" without one."""
        return content_digest(from_bytes(self.trajectory)) if self.trajectory else ""


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs for one cell. `teacher` is given for student cells."""

    cell: Cell
    device: str = "cpu"
    work_dir: str = ".kdbench_cache"  # RecBole's scratch folder
    plugins: tuple[str, ...] = ()
    teacher: TeacherArtifact | None = None
    teacher_key: str = ""
    trajectory: bool = False  # a teacher task: record the teacher's trajectory (`kdbench.training.trajectory`)
    # A student task of a strategy that learns from an ensemble's trajectories (HetComp): each
    # teacher's artifact with its trajectory, the pairing's teacher first.
    ensemble: tuple[TeacherArtifact, ...] = ()


@dataclass
class CellOutcome:
    record: RunRecord
    log: str = ""
    teacher: TeacherArtifact | None = None  # the trained teacher, for a teacher task


# -- per-process state --------------------------------------------------------------------------
_DATA: dict[tuple, PreparedData] = {}


def prepared_data(cell: Cell, spec: BackboneSpec, settings: TrainSettings, device: str,
                  work_dir: str) -> PreparedData:
    """The split of `cell`'s dataset with a train loader for `spec`'s input type and batch size,
    loaded once per process."""
    input_type = getattr(recbole_model_class(spec.model), "input_type", None)
    key = (cell.dataset, cell.data_path, cell.split_seed, cell.protocol, str(input_type), settings.batch_size,
           device)
    if key not in _DATA:
        _DATA[key] = load_data(cell.dataset, cell.data_path, model=spec.model, batch_size=settings.batch_size,
                               split_seed=cell.split_seed, device=device, work_dir=work_dir, protocol=cell.protocol)
    if cell.data_share == FULL_SHARE:
        return _DATA[key]
    share_key = key + (cell.data_share, cell.subsample_seed)  # a share of the training split: kdbench.run.subsample
    if share_key not in _DATA:
        _DATA[share_key] = subsample_training(_DATA[key], cell.data_share, cell.subsample_seed)
    return _DATA[share_key]


def prepare_worker(task: CellTask) -> None:
    """Threads, allocator, plugins: what every task sets up first (idempotent)."""
    from kdbench.registry import load_entry_point_plugins, load_plugin_file
    from kdbench.training.heap import keep_freed_memory

    import warnings

    warnings.filterwarnings("ignore")  # RecBole's and torch's deprecation noise, as the CLI does
    torch.set_num_threads(task.cell.threads)
    keep_freed_memory()
    load_entry_point_plugins()
    for plugin in task.plugins:
        load_plugin_file(plugin)


# -- the tasks ----------------------------------------------------------------------------------
def run_task(task: CellTask) -> CellOutcome:
    """Run one cell. A KdbenchError (a user mistake) propagates; any other exception becomes a
    failed record with the traceback in the log."""
    prepare_worker(task)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    start = time.perf_counter()
    try:
        outcome = _train_teacher(task) if task.cell.is_teacher else CellOutcome(_train_student(task))
    except KdbenchError:
        raise
    except Exception as exc:  # a failed cell is recorded and the suite goes on
        logger.error("cell failed:\n%s", traceback.format_exc())
        outcome = CellOutcome(failed_record(task.cell, task.device, f"{type(exc).__name__}: {exc}"))
    finally:
        logger.removeHandler(handler)
    outcome.record["wall_seconds"] = time.perf_counter() - start
    outcome.log = stream.getvalue()
    return outcome


def _train_teacher(task: CellTask) -> CellOutcome:
    from recbole.utils import init_seed

    cell = task.cell
    data = prepared_data(cell, cell.teacher, cell.teacher_settings, task.device, task.work_dir)
    init_seed(cell.teacher_seed, True)
    model = build_model(cell.teacher, data, task.device, init_std=cell.teacher_settings.init_std)
    logging.getLogger(LOGGER).info("training teacher %s on %s (seed %d)", cell.teacher, cell.dataset, cell.teacher_seed)
    on_epoch = epoch_logger(f"teacher {cell.teacher}", cell.teacher_settings.max_epochs)
    recorder = (TrajectoryRecorder(model, data.uid_field, data.iid_field, data.history, on_epoch)
                if task.trajectory else None)
    checkpoint = cell_checkpoint(task, data, companions={"trajectory": recorder} if recorder is not None else None,
                                 every_seconds=TEACHER_CHECKPOINT_SECONDS)
    result = fit(model, data, cell.teacher_settings, seed=cell.teacher_seed, on_epoch=recorder or on_epoch,
                 checkpoint=checkpoint)
    trajectory = to_bytes(recorder.finish(result.best_epoch)) if recorder is not None else b""
    record = measure(cell, model, data, result, kd_prepare_seconds=0.0, device=task.device)
    return CellOutcome(record, teacher=TeacherArtifact.from_state(task.teacher_key, result.best_state, record,
                                                                  trajectory))


_TEACHERS: "OrderedDict[tuple[str, str], torch.nn.Module]" = OrderedDict()
KEPT_TEACHERS = 4  # frozen teachers a process keeps (a tuning round alternates between pairings)


def load_teacher(cell: Cell, artifact: TeacherArtifact, device: str, work_dir: str,
                 trainable: bool = False) -> torch.nn.Module:
    """The teacher of `cell` from its artifact: frozen (eval mode, no gradients), or trainable
    (train mode, gradients on) for a strategy that trains it further. A trainable one is a private
    copy built from the artifact's bytes, so nothing done to it reaches the cache; a frozen one is
    built once per process and artifact (key) and shared by the cells and tuning trials the process
    runs next, as nothing can train it."""
    from recbole.utils import init_seed

    key = (artifact.key, str(device))
    if not trainable and key in _TEACHERS:
        _TEACHERS.move_to_end(key)
        return _TEACHERS[key]
    data = prepared_data(cell, cell.teacher, cell.teacher_settings, device, work_dir)
    init_seed(cell.teacher_seed, True)
    model = build_model(cell.teacher, data, device)
    model.load_state_dict(artifact.state_dict())
    model.train(trainable)
    for parameter in model.parameters():
        parameter.requires_grad_(trainable)
    if not trainable and artifact.key:
        _TEACHERS[key] = model
        share_teacher(model, f"{artifact.key}@{device}")  # its top-N lists too, across trials and seeds
        while len(_TEACHERS) > KEPT_TEACHERS:
            _TEACHERS.popitem(last=False)
    return model


def build_student_run(task: CellTask, draws: dict[str, Any] | None = None,
                      timings: dict[str, float] | None = None):
    """(data, student model, prepared strategy, preparation seconds) of a student cell; `timings`,
    if given, receives `teacher_load_seconds` (the teacher built from its artifact). The model is
    the one the strategy trains (`model_to_train`: a compression baseline's compressed teacher);
    a tuning trial's `draws` go over the cell's hyperparameters (`Cell.strategy_hparams`)."""
    from recbole.utils import init_seed

    cell = task.cell
    strategy_class = STRATEGIES.get(cell.strategy)
    if task.teacher is None and strategy_class.needs_teacher:
        raise RuntimeError(f"cell {cell.label} seed {cell.seed}: no teacher artifact given")
    start = time.perf_counter()
    from_file = is_file_teacher(cell.teacher)
    teacher = None if from_file or task.teacher is None else load_teacher(
        cell, task.teacher, task.device, task.work_dir, trainable=strategy_class.updates_teacher)
    if timings is not None:
        timings["teacher_load_seconds"] = time.perf_counter() - start
    data = prepared_data(cell, cell.student, cell.train, task.device, task.work_dir)
    init_seed(cell.seed, True)
    student = build_model(cell.student, data, task.device, init_std=cell.train.init_std)
    context = family_of(cell.student).context(data, student, teacher, task.device, cell.seed)
    if from_file:
        context = replace(context, teacher=file_teacher_adapter(cell, data, context, task.device))
    context.trajectories = tuple(from_bytes(artifact.trajectory) for artifact in task.ensemble)
    strategy = strategy_class(context, **cell.strategy_hparams(draws))
    strategy = strategy.to(task.device)
    start = time.perf_counter()
    strategy.prepare()
    student = strategy.model_to_train(student)  # a compression baseline's compressed teacher
    return data, student, strategy, time.perf_counter() - start


def file_teacher_adapter(cell: Cell, data: PreparedData, context, device: str) -> FileTeacherAdapter:
    """The cell's teacher file, read, checked against the split and seen as a teacher adapter."""
    teacher = read_teacher_file(cell.teacher.path)
    if content_hash(cell.teacher.path) != cell.teacher.sha256:
        raise KdbenchError(f"teacher file {cell.teacher.path} changed since the run was planned: run it again")
    check_against_split(teacher, cell.dataset, family_of(cell.student).name, context.n_users, data.n_items,
                        data.fingerprint, data.history, cell.protocol, cell.split_seed)
    return FileTeacherAdapter(teacher, context.uid_field, context.iid_field, device)


def _train_student(task: CellTask) -> RunRecord:
    cell = task.cell
    timings: dict[str, float] = {}
    data, student, strategy, prepare_seconds = build_student_run(task, timings=timings)
    result = fit(student, data, cell.train, strategy=strategy, seed=cell.seed,
                 on_epoch=epoch_logger(f"{cell.label} seed {cell.seed}"), checkpoint=cell_checkpoint(task, data))
    deployed = deployed_model(strategy, student)
    record = measure(cell, deployed, data, result, kd_prepare_seconds=prepare_seconds, device=task.device)
    if getattr(deployed, DEPLOYED, None) is not None:
        record["compression"] = dict(getattr(deployed, DEPLOYED))  # format, kernel, params, bytes
        targets = cell_targets(cell)
        if targets:  # the shape `kdbench cost` times with the format's kernel (the row's inference cost)
            record["model"] = compressed_name(*targets[-1])
    record["training"].update(timings)
    record["hparams"] = strategy.hparams
    teacher = {id(p) for p in strategy.context.teacher.model.parameters()} if strategy.context.teacher else set()
    record["training_only_params"] = sum(p.numel() for p in strategy.parameters() if id(p) not in teacher)
    if task.teacher is not None and task.teacher.meta["test"]:  # the cached teacher's, before any further training (a file has none)
        record["teacher_test"] = task.teacher.meta["test"]
    record["teacher_trained_further"] = bool(strategy.updates_teacher)
    if task.ensemble:  # the ensemble's teachers (their specs are in the identity's hparams), cache keys,
        # the lists learned from (the context holds them decoded, in the ensemble's order) and what each
        # teacher's training cost (its own record's wall time and threads: the strategy's price beyond
        # the pairing's teacher, `report.load.ensemble_teachers`)
        record["ensemble"] = [{"teacher": artifact.meta.get("model"), "key": artifact.key,
                               "test": artifact.meta.get("test"), "trajectory": content_digest(trajectory),
                               "wall_seconds": artifact.meta.get("wall_seconds"),
                               "threads": (artifact.meta.get("environment") or {}).get("threads")}
                              for artifact, trajectory in zip(task.ensemble, strategy.context.trajectories)]
    return record


RESUME_FOLDER = "resume"  # under the work folder: the kept epochs of cells being trained
# A teacher validates every epoch and its state (400-dim tables, Adam's moments, the best weights, the
# trajectory's lists) is 0.2-0.8 GB on the catalogue datasets: kept at most once a minute, a few
# percent of its training time, at most a minute and an epoch lost to a kill.
TEACHER_CHECKPOINT_SECONDS = 60.0


def cell_checkpoint(task: CellTask, data: PreparedData, companions: dict | None = None,
                    every_seconds: float = 0.0) -> EpochCheckpoint:
    """Where a cell, a student's or a teacher's, keeps its last validated epoch (`training.resume`): a
    cell killed with its worker (a signal, a session that ends) continues there when it is run again,
    instead of at epoch 1. Named by everything that determines the run (address, identity, data, and
    for a teacher whether it records its trajectory, a companion whose lists are kept too), so a cell
    made with other settings or code never takes another's state."""
    cell = task.cell
    digest = run_key([asdict(cell.address), identity(cell, task.device), data.fingerprint,
                      *(["trajectory"] if task.trajectory else [])])
    return EpochCheckpoint(Path(task.work_dir) / RESUME_FOLDER / f"{digest[:32]}.pt", digest, companions,
                           every_seconds)


def deployed_model(strategy, model):
    """The model a run deploys: the trained one, or what a strategy (a composite's parts, in order)
    makes of it after training (`compress`: quantised)."""
    for part in getattr(strategy, "members", None) or [strategy]:
        model = part.compress(model) or model
    return model


def measure(cell: Cell, model, data: PreparedData, result: FitResult, kd_prepare_seconds: float,
            device: str) -> RunRecord:
    """Test metrics (per user too), inference cost and the training summary of a trained model.

    The summary's time breakdown: `kd_prepare_seconds` (the strategy's prepare), `train_seconds`,
    `eval_seconds` (validation passes), `test_seconds` (the test pass), `cost_seconds` (measuring
    inference cost); a student's run adds `teacher_load_seconds`. `beyond` holds the test users'
    beyond-accuracy metrics (`kdbench.evaluation.beyond`), `test_users.train_interactions` each test user's
    training interactions in `per_user`'s user order (the report's light and heavy users)."""
    start = time.perf_counter()
    test = full_ranking(model, data.test, data.config)
    test_seconds = time.perf_counter() - start
    adapter, n_queries = family_of(cell.student if not cell.is_teacher else cell.teacher).cost_adapter(model, data)
    start = time.perf_counter()
    cost = inference_cost(model, data.uid_field, data.iid_field, n_queries, adapter=adapter)
    cost_seconds = time.perf_counter() - start
    return base_record(cell, device) | {
        "status": "ok",
        "test": test.metrics,
        "valid_ndcg@10": result.best_valid,
        "per_user": {
            "user_ids": test.user_ids.tolist(),
            **{m: [round(float(v), 6) for v in test.per_user[m]] for m in test.per_user},
        },
        **beyond_blocks(data, test),
        "cost": cost.as_dict(),
        "training": result.summary() | {"kd_prepare_seconds": kd_prepare_seconds, "test_seconds": test_seconds,
                                        "cost_seconds": cost_seconds},
    }


def beyond_blocks(data: PreparedData, test) -> dict[str, Any]:
    """A record's `beyond` and `test_users` blocks, from the test pass and the training split's
    RecBole counters (the ones RecBole's own beyond-accuracy metrics read)."""
    train = data.train._dataset
    counts = item_counts(train.item_counter, int(train.item_num))  # n: RecBole's item_num, padding included
    beyond = beyond_accuracy(test.topk_items, counts, BEYOND_K, TAIL_RATIO)
    return {"beyond": {key: round(value, 6) for key, value in beyond.items()} | {"tail_ratio": TAIL_RATIO},
            "test_users": {"train_interactions": user_train_counts(train.user_counter, test.user_ids)}}


def epoch_logger(what: str, max_epochs: int | None = None):
    """Each validation in the cell's log; given `max_epochs` (a teacher: the long wait before the
    first cell finishes), also every epoch as a progress line (`kdbench.progress`):
    `teacher BPR:64 epoch 12/300, valid NDCG@10 0.2841 (best 0.2850)`."""
    logger = logging.getLogger(LOGGER)
    best: list[float] = []

    def on_epoch(epoch: int, valid: float | None) -> None:
        if valid is not None:
            logger.info("%s epoch %d valid ndcg@10 %.4f", what, epoch, valid)
            best[:] = [max(best + [valid])]
        if max_epochs is not None:
            shown = f", valid NDCG@10 {valid:.4f}" if valid is not None else ""
            progress.report(f"{what} epoch {epoch}/{max_epochs}{shown}"
                            + (f" (best {best[0]:.4f})" if best and valid is not None else ""))

    return on_epoch
