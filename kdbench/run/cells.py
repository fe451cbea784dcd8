"""Cells: the unit of work.

A cell is (dataset, teacher -> student, strategy, seed) plus everything that determines its result:
the strategy's hyperparameters, the training settings, the split, the evaluation protocol
(`families.PROTOCOLS`) and the thread count. Where its record lives (`address`), what it is stored
with (`record.identity`) and how a stored record is checked and read are the run record's
(`kdbench.run.record`); a cell is rebuilt from a stored record by `cell_from_record`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kdbench.data.loading import DEFAULT_SPLIT_SEED
from kdbench.data.location import recorded_data_path
from kdbench.errors import KdbenchError
from kdbench.families import DEFAULT_PROTOCOL, BackboneSpec
from kdbench.run.record import DEFAULTS, TEACHER, TUNED, Address, RunRecord, run_label
from kdbench.run.record import identity_differences  # noqa: F401  (tuning imports it from here)
from kdbench.training.teacher_file import FileTeacherSpec, parse_teacher
from kdbench.training.loop import TrainSettings

# Intra-op threads per cell. The models are too small to gain from a second thread, and the thread
# count changes results in the last digits: fixed, so a result does not depend on the executor.
CELL_THREADS = 1


@dataclass(frozen=True)
class Cell:
    """One unit of work. `strategy == "teacher"` is the teacher's own row."""

    dataset: str
    teacher: BackboneSpec | FileTeacherSpec  # a model kdbench trains, or a teacher file
    student: BackboneSpec
    strategy: str
    seed: int
    hparams: tuple[tuple[str, Any], ...] = ()
    train: TrainSettings = field(default_factory=TrainSettings)
    teacher_train: TrainSettings | None = None  # defaults to `train`
    teacher_seed: int = 0
    data_path: str | None = None
    split_seed: int = DEFAULT_SPLIT_SEED
    variant: str = DEFAULTS
    threads: int = CELL_THREADS
    protocol: str = DEFAULT_PROTOCOL  # a preset of families.PROTOCOLS
    # less training data (`kdbench data-share`, kdbench.run.subsample): this share of each user's training
    # interactions, drawn with `subsample_seed`; in the identity only below 1.0
    data_share: float = 1.0
    subsample_seed: int = 0

    @property
    def label(self) -> str:
        return f"{self.strategy}@{TUNED}" if self.variant == TUNED else run_label(self.strategy, dict(self.hparams))

    @property
    def pairing(self) -> str:
        return f"{self.teacher}->{self.student}"

    @property
    def is_teacher(self) -> bool:
        return self.strategy == TEACHER

    @property
    def teacher_settings(self) -> TrainSettings:
        return self.teacher_train or self.train

    @property
    def address(self) -> Address:
        return Address(self.dataset, self.pairing, self.label, self.seed, self.protocol)

    def strategy_hparams(self, draws: dict[str, Any] | None = None) -> dict[str, Any]:
        """The strategy's keyword arguments: the cell's hyperparameters (the suite's fixed ones, e.g.
        DE's `num_experts`) with a tuning trial's `draws` over them, so that a trial trains, and its
        study reports as best, the model its tuned run will train."""
        return {**dict(self.hparams), **(draws or {})}

    def teacher_cell(self) -> "Cell":
        return replace(self, strategy=TEACHER, seed=self.teacher_seed, hparams=(), variant=DEFAULTS)


def cell_from_record(record: RunRecord, source: str = "run record") -> Cell:
    """The cell a stored record was made from, rebuilt from its path fields and `config`, so that
    it can be run again (`kdbench reproduce`) or its identity checked against the current code
    (`kdbench verify`). A record without a `protocol` field was made under `random`, the only
    protocol before presets existed. A defaults run's overrides come from its label (`rrd@K=20`), a tuned run's
    hyperparameters from `config.hparams`. A catalogue dataset's absolute `data_path` (records made before
    the catalogue) names a folder of the machine that ran it and is dropped: the dataset is read from
    the data folder, or from the folder `reproduce --data-path` gives."""
    config = record.get("config") or {}
    try:
        strategy, variant = record["strategy"], record.get("variant") or DEFAULTS
        teacher_train = TrainSettings(**config["teacher_train"])
        train = teacher_train if strategy == TEACHER else TrainSettings(**config["train"])
        if strategy == TEACHER:
            hparams: dict[str, Any] = {}
        elif variant == TUNED:
            hparams = dict(config.get("hparams") or record.get("hparams") or {})
        else:
            _, _, overrides = record["label"].partition("@")
            hparams = dict(item.split("=", 1) for item in overrides.split(",")) if overrides else {}
        return Cell(
            dataset=record["dataset"], teacher=parse_teacher(record["teacher"]),
            student=BackboneSpec.parse(record["student"]), strategy=strategy, seed=int(record["seed"]),
            hparams=tuple(sorted(hparams.items())), train=train, teacher_train=teacher_train,
            teacher_seed=int(config.get("teacher_seed", 0)),
            data_path=recorded_data_path(record["dataset"], config.get("data_path")),
            split_seed=int(config.get("split_seed", DEFAULT_SPLIT_SEED)), variant=variant,
            threads=int(config.get("threads", CELL_THREADS)),
            protocol=str(record.get("protocol") or DEFAULT_PROTOCOL),
            **_data_share(config.get("data_share")),
        )
    except KdbenchError as exc:
        raise KdbenchError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"lacks {exc}" if isinstance(exc, KeyError) else f"has a malformed field ({exc})"
        raise KdbenchError(f"{source} {detail}: cannot rebuild the run it records") from None


def _data_share(stored: Any) -> dict[str, Any]:
    """A record's `config.data_share` ({share, seed}) as Cell fields; none (the whole split) when absent."""
    if stored is None:
        return {}
    return {"data_share": float(stored["share"]), "subsample_seed": int(stored["seed"])}
