"""The runner: one cell = (dataset, teacher -> student, strategy, seed) trained and measured.

- the teacher of a cell is trained once and cached on disk (`checkpoints.cache_key`);
- each cell's result is written atomically as its own JSON file; a finished cell is skipped on a
  rerun (`force=True` redoes it), so an interrupted suite resumes where it stopped;
- a cell that raises (or whose loss turns NaN) is recorded as failed with its error, and the
  suite goes on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from kdbench import __version__, atomic
from kdbench.backbones import REPRESENTATIONS, BackboneAdapter, BackboneSpec, build_model
from kdbench.checkpoints import cache_key, load_checkpoint, save_checkpoint
from kdbench.data import DEFAULT_SPLIT_SEED, PROTOCOL, PreparedData, check_dataset, load_data
from kdbench.errors import KdbenchError, choices
from kdbench.evaluate import full_ranking, inference_cost
from kdbench.results import RunStore, run_label
from kdbench.strategies import STRATEGIES, DistillationContext
from kdbench.train import FitResult, TrainSettings, fit

TEACHER = "teacher"
PER_USER_METRICS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")


@dataclass(frozen=True)
class Cell:
    """One unit of work. `strategy == "teacher"` is the teacher's own row."""

    dataset: str
    teacher: BackboneSpec
    student: BackboneSpec
    strategy: str
    seed: int
    hparams: tuple[tuple[str, Any], ...] = ()
    train: TrainSettings = field(default_factory=TrainSettings)
    teacher_train: TrainSettings | None = None  # defaults to `train`
    teacher_seed: int = 0
    data_path: str | None = None
    split_seed: int = DEFAULT_SPLIT_SEED

    @property
    def label(self) -> str:
        return run_label(self.strategy, dict(self.hparams))

    @property
    def pairing(self) -> str:
        return f"{self.teacher}->{self.student}"

    @property
    def teacher_settings(self) -> TrainSettings:
        return self.teacher_train or self.train

    def teacher_cell(self) -> "Cell":
        return replace(self, strategy=TEACHER, seed=self.teacher_seed, hparams=())


def validate_cells(cells: Iterable[Cell]) -> list[Cell]:
    """Fail early, before anything trains, on a bad dataset, strategy or hyperparameter."""
    cells = list(cells)
    checked_datasets = set()
    for cell in cells:
        if (cell.dataset, cell.data_path) not in checked_datasets:
            check_dataset(cell.dataset, cell.data_path)
            checked_datasets.add((cell.dataset, cell.data_path))
        if cell.strategy != TEACHER:
            strategy = STRATEGIES.get(cell.strategy)
            strategy.resolve_hparams(dict(cell.hparams))
            for spec in (cell.teacher, cell.student) if strategy.needs_representations else ():
                if spec.model not in REPRESENTATIONS:
                    raise KdbenchError(
                        f"strategy '{cell.strategy}' needs user/item representations, which kdbench "
                        f"provides for {choices(REPRESENTATIONS)}; not for {spec.model}"
                    )
    return cells


class Runner:
    """Runs cells, sharing loaded datasets and cached teachers between them."""

    def __init__(
        self,
        results_dir: str | Path = "results",
        cache_dir: str | Path = ".kdbench_cache",
        device: str = "cpu",
        force: bool = False,
        log: Callable[[str], None] = lambda message: None,
    ):
        self.store = RunStore(results_dir)
        self.store.clear_partial_writes()
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.force = force
        self.log = log
        self._data: dict[tuple, PreparedData] = {}
        self.executed = 0  # cells this Runner actually ran (not found finished)

    # -- data and teacher -------------------------------------------------------------------
    def data_for(self, cell: Cell, spec: BackboneSpec, settings: TrainSettings) -> PreparedData:
        """The split for `cell`, with a train loader of the right input type and batch size."""
        from recbole.utils import get_model

        input_type = getattr(get_model(spec.model), "input_type", None)
        key = (cell.dataset, cell.data_path, cell.split_seed, str(input_type), settings.batch_size)
        if key not in self._data:
            self._data[key] = load_data(
                cell.dataset, cell.data_path, model=spec.model, batch_size=settings.batch_size,
                split_seed=cell.split_seed, device=self.device, work_dir=self.cache_dir,
            )
        return self._data[key]

    def teacher_key(self, cell: Cell, data: PreparedData) -> str:
        return cache_key({
            "dataset": cell.dataset,
            "data_fingerprint": data.fingerprint,
            "protocol": PROTOCOL,
            "split_seed": cell.split_seed,
            "model": str(cell.teacher),
            "model_config": cell.teacher.size_overrides(),
            "seed": cell.teacher_seed,
            "train": cell.teacher_settings.as_dict(),
        })

    def teacher(self, cell: Cell) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The frozen teacher of `cell`: loaded from the cache, or trained and cached."""
        from recbole.utils import init_seed

        data = self.data_for(cell, cell.teacher, cell.teacher_settings)
        folder = self.cache_dir / "teachers" / self.teacher_key(cell, data)
        init_seed(cell.teacher_seed, True)
        model = build_model(cell.teacher, data, self.device)
        cached = load_checkpoint(folder)
        if cached is not None:
            state, meta = cached
            model.load_state_dict(state)
        else:
            self.log(f"training teacher {cell.teacher} on {cell.dataset} (seed {cell.teacher_seed})")
            result = fit(model, data, cell.teacher_settings, seed=cell.teacher_seed,
                         on_epoch=self._epoch_logger(f"teacher {cell.teacher}"))
            meta = self._measure(cell.teacher_cell(), model, data, result, kd_prepare_seconds=0.0)
            save_checkpoint(folder, result.best_state, meta)
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model, meta

    # -- cells ------------------------------------------------------------------------------
    def _stored(self, cell: Cell) -> tuple[dict[str, Any] | None, bool]:
        """(finished record at this cell's path or None, whether it was made with this cell's settings)."""
        record = self.store.read(cell.dataset, cell.pairing, cell.label, cell.seed)
        if record is None or record.get("status") != "ok":
            return None, False
        return record, record.get("config") == json.loads(json.dumps(self._config(cell)))

    def is_done(self, cell: Cell) -> bool:
        return self._stored(cell)[1]

    def check_no_overwrite(self, cells: Iterable[Cell]) -> None:
        """Refuse, before anything trains, to replace a finished run made with other settings."""
        if self.force:
            return
        for cell in cells:
            record, same = self._stored(cell)
            if record is not None and not same:
                path = self.store.path(cell.dataset, cell.pairing, cell.label, cell.seed)
                raise KdbenchError(
                    f"{path} holds a finished run with other settings; pass --force to replace it "
                    f"or choose another --results-dir"
                )

    def run(self, cell: Cell) -> dict[str, Any]:
        """Run one cell (unless finished with the same settings and not forced); returns its record."""
        record, same = self._stored(cell)
        if same and not self.force:
            return record
        self.executed += 1
        log_path = self.store.path(cell.dataset, cell.pairing, cell.label, cell.seed).with_suffix(".log")
        handler = _attach_log(log_path)
        start = time.perf_counter()
        try:
            record = self._run(cell)
        except KdbenchError:
            log_path.unlink(missing_ok=True)
            raise
        except Exception as exc:  # a failed cell is recorded and the suite goes on
            logging.getLogger("kdbench").error("cell failed:\n%s", traceback.format_exc())
            record = self._base_record(cell) | {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        finally:
            logging.getLogger("kdbench").removeHandler(handler)
            handler.close()
        record["wall_seconds"] = time.perf_counter() - start
        self.store.write(cell.dataset, cell.pairing, cell.label, cell.seed, record)
        return record

    def _run(self, cell: Cell) -> dict[str, Any]:
        from recbole.utils import init_seed

        teacher_model, teacher_meta = self.teacher(cell)
        if cell.strategy == TEACHER:
            return teacher_meta | self._base_record(cell) | {"status": "ok"}
        data = self.data_for(cell, cell.student, cell.train)
        init_seed(cell.seed, True)
        student = build_model(cell.student, data, self.device)
        strategy_cls = STRATEGIES.get(cell.strategy)
        context = DistillationContext(
            teacher=BackboneAdapter(teacher_model, data.uid_field, data.iid_field),
            student=BackboneAdapter(student, data.uid_field, data.iid_field),
            n_users=data.n_users, n_items=data.n_items, history=data.history,
            uid_field=data.uid_field, iid_field=data.iid_field, neg_iid_field=data.neg_iid_field,
            device=torch.device(self.device), seed=cell.seed,
        )
        strategy = strategy_cls(context, **dict(cell.hparams)).to(self.device)
        start = time.perf_counter()
        strategy.prepare()
        prepare_seconds = time.perf_counter() - start
        result = fit(student, data, cell.train, strategy=strategy, seed=cell.seed,
                     on_epoch=self._epoch_logger(f"{cell.label} seed {cell.seed}"))
        record = self._measure(cell, student, data, result, kd_prepare_seconds=prepare_seconds)
        record["hparams"] = strategy.hparams
        record["training_only_params"] = sum(p.numel() for p in strategy.parameters())
        record["teacher_test"] = teacher_meta["test"]
        return record

    def _measure(self, cell: Cell, model, data: PreparedData, result: FitResult,
                 kd_prepare_seconds: float) -> dict[str, Any]:
        test = full_ranking(model, data.test, data.config)
        cost = inference_cost(model, data.uid_field, data.iid_field, data.n_users)
        return self._base_record(cell) | {
            "status": "ok",
            "test": test.metrics,
            "valid_ndcg@10": result.best_valid,
            "per_user": {
                "user_ids": test.user_ids.tolist(),
                **{m: [round(float(v), 6) for v in test.per_user[m]] for m in PER_USER_METRICS},
            },
            "cost": cost.as_dict(),
            "training": result.summary() | {"kd_prepare_seconds": kd_prepare_seconds},
        }

    def _config(self, cell: Cell) -> dict[str, Any]:
        """Everything besides the record's path (dataset, pairing, label, seed) that determines it."""
        is_teacher = cell.strategy == TEACHER
        return {
            "train": (cell.teacher_settings if is_teacher else cell.train).as_dict(),
            "teacher_train": cell.teacher_settings.as_dict(),
            "protocol": PROTOCOL,
            "split_seed": cell.split_seed,
            "teacher_seed": cell.teacher_seed,
            "data_path": cell.data_path,
            "device": self.device,
        }

    def _base_record(self, cell: Cell) -> dict[str, Any]:
        is_teacher = cell.strategy == TEACHER
        return {
            "kdbench_run": 1,
            "dataset": cell.dataset,
            "teacher": str(cell.teacher),
            "student": str(cell.student),
            "pairing": cell.pairing,
            "model": str(cell.teacher if is_teacher else cell.student),
            "strategy": cell.strategy,
            "label": cell.label,
            "family": TEACHER if is_teacher else STRATEGIES.get(cell.strategy).family,
            "seed": cell.seed,
            "config": self._config(cell),
            "environment": environment(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def _epoch_logger(self, what: str):
        logger = logging.getLogger("kdbench")

        def on_epoch(epoch: int, valid: float | None) -> None:
            if valid is not None:
                logger.info("%s epoch %d valid ndcg@10 %.4f", what, epoch, valid)

        return on_epoch


def _attach_log(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("kdbench")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return handler


def environment() -> dict[str, str]:
    import recbole

    return {
        "kdbench": __version__,
        "recbole": recbole.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "threads": str(torch.get_num_threads()),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_cells(runner: Runner, cells: list[Cell]) -> list[dict[str, Any]]:
    """Run every cell in order with one progress bar (and ETA) across the whole grid."""
    from tqdm import tqdm

    records = []
    with tqdm(cells, desc="kdbench", unit="cell", dynamic_ncols=True) as bar:
        for cell in bar:
            bar.set_postfix_str(f"{cell.dataset} {cell.pairing} {cell.label} s{cell.seed}")
            records.append(runner.run(cell))
    return records
