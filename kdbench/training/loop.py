"""The training loop: a teacher, or a student with an optional distillation term.

    loss = student base loss (RecBole's calculate_loss) + weight * strategy.loss(batch)

Validation every `eval_every` epochs (and after the last); early stopping on validation NDCG@10
once `patience` epochs have passed since the best validation, checked at each validation. Patience
counts epochs, not validations, so a cadence of k keeps the same patience in training time: with
k = 1 the two are the same. A strategy whose schedule is still running (`holds_early_stopping`,
HetComp's curriculum) holds early stopping, and patience counts from the later of the best
validation and the last held epoch. The best weights are kept in memory and restored before the
test evaluation.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from kdbench.backbones import BackboneAdapter
from kdbench.data.loading import VALID_METRIC, PreparedData
from kdbench.errors import KdbenchError
from kdbench.evaluation.evaluator import full_ranking
from kdbench.strategies.base import DistillationStrategy
from kdbench.training.resume import EpochCheckpoint, restore


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; part of every cache key and result file."""

    learning_rate: float = 0.001
    batch_size: int = 2048
    max_epochs: int = 300
    patience: int = 10  # epochs since the best validation NDCG@10 (checked at each validation)
    eval_every: int = 1  # epochs between validations (patience is counted in epochs whatever it is)
    weight_decay: float = 0.0
    # Early stopping cannot fire before this epoch. LightGCN's first validations rank by the
    # propagated initial embeddings (popularity-like); one of five seeds stopped at epoch 11 with
    # its best at epoch 1 (NDCG@10 0.155 against 0.26-0.28 for the others) without it.
    min_epochs: int = 0
    # Embeddings drawn from N(0, init_std^2) instead of the backbone's own initialisation (None).
    init_std: float | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs", "patience", "eval_every"):
            if getattr(self, name) < 1:
                raise KdbenchError(f"{name.replace('_', ' ')} must be >= 1, got {getattr(self, name)}")
        if self.min_epochs < 0:
            raise KdbenchError(f"min epochs must be >= 0, got {self.min_epochs}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise KdbenchError(f"learning rate must be > 0 and finite, got {self.learning_rate}")
        if self.init_std is not None and not (self.init_std > 0 and math.isfinite(self.init_std)):
            raise KdbenchError(f"init std must be > 0 and finite, got {self.init_std}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):  # also refuses nan
            raise KdbenchError(f"weight decay must be >= 0 and finite, got {self.weight_decay}")

    def as_dict(self) -> dict[str, Any]:
        """The settings; min_epochs and init_std only when set, so records and cache keys made
        before those fields existed (where they were 0 and the backbone's own) stay valid."""
        settings = asdict(self)
        if settings["min_epochs"] == 0:
            del settings["min_epochs"]
        if settings["init_std"] is None:
            del settings["init_std"]
        return settings


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    hit_epoch_cap: bool  # stopped by max_epochs, not by early stopping
    best_valid: float
    train_seconds: float  # optimisation only, all epochs
    eval_seconds: float  # validation passes
    seconds_per_epoch: float  # optimisation only
    valid_curve: list[tuple[int, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "best_state"}


def _base_loss(model: nn.Module, batch) -> torch.Tensor:
    loss = model.calculate_loss(batch)
    return sum(loss) if isinstance(loss, tuple) else loss


def make_optimizer(model: nn.Module, settings: TrainSettings,
                   strategy: DistillationStrategy | None = None) -> torch.optim.Optimizer:
    """Adam over the student's parameters and the strategy's training-only modules, plus the
    teacher copy's for a strategy that trains the teacher further (`updates_teacher`). Adam keeps
    its state per parameter, so one Adam over disjoint parameter sets steps each set exactly as
    its own Adam with the same settings would."""
    params = list(model.parameters())
    if strategy is not None:
        params += [p for p in strategy.parameters() if p.requires_grad]
        if strategy.updates_teacher:
            params += [p for p in strategy.context.teacher.model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)


def train_step(student: BackboneAdapter, batch, optimizer: torch.optim.Optimizer,
               strategy: DistillationStrategy | None = None, kd_weight: float | None = None,
               epoch: int = 0) -> torch.Tensor:
    """One optimisation step: loss = base loss + kd_weight * strategy.loss(batch); returns the loss.

    `fit` and the training-step micro-benchmarks both call this, so the benchmark times the
    training loop's own step.
    """
    if kd_weight is None:
        kd_weight = strategy.weight if strategy is not None else 0.0
    model = student.model
    with student.one_forward_per_step():
        loss = _base_loss(model, batch)
        if strategy is not None:
            kd_loss = strategy.loss(batch)
            if kd_loss is not None:
                loss = loss + kd_weight * kd_loss
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def validate_only(model: nn.Module, data: PreparedData) -> FitResult:
    """The result of a strategy that does not train (`trains` False): 0 epochs, one validation."""
    start = time.perf_counter()
    valid = full_ranking(model, data.valid, data.config).metrics[VALID_METRIC]
    return FitResult(best_epoch=0, epochs_run=0, hit_epoch_cap=False, best_valid=valid, train_seconds=0.0,
                     eval_seconds=time.perf_counter() - start, seconds_per_epoch=0.0, valid_curve=[(0, valid)],
                     best_state=copy.deepcopy(model.state_dict()))


def fit(
    model: nn.Module,
    data: PreparedData,
    settings: TrainSettings,
    strategy: DistillationStrategy | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, float | None], None] | None = None,
    checkpoint: EpochCheckpoint | None = None,
) -> FitResult:
    """Train `model` on `data.train` until validation NDCG@10 stops improving; keep the best weights.
    A strategy that does not train is validated once (`validate_only`). With `checkpoint`, the state
    after each validated epoch is kept there and a run that finds its own continues after its last
    kept epoch, bit for bit (`kdbench.training.resume`); the file is removed when the run ends."""
    if strategy is not None and not strategy.trains:
        return validate_only(model, data)
    device = data.config["device"]
    student = BackboneAdapter(model, data.uid_field, data.iid_field)
    optimizer = make_optimizer(model, settings, strategy)
    data.train.generator.manual_seed(seed)  # batch order follows the model seed, not the split seed
    np.random.seed(seed)  # so do RecBole's negative samples (drawn from numpy's global generator)
    torch.manual_seed(seed)  # and dropout
    kd_weight = strategy.weight if strategy is not None else 0.0

    best, best_epoch, best_state = -math.inf, 0, {}
    held_until = 0  # the last epoch the strategy held early stopping (`holds_early_stopping`)
    curve: list[tuple[int, float]] = []
    train_seconds = eval_seconds = 0.0
    epoch = first = 0
    stopped_early = False
    if checkpoint is not None:
        checkpoint.mark_prepared(strategy)
        stored = checkpoint.load()
        if stored is not None:
            loop = restore(stored, model, optimizer, data.train.generator, strategy, checkpoint.companions)
            best, best_epoch, best_state, held_until = loop["best"], loop["best_epoch"], loop["best_state"], loop["held_until"]
            curve = [(int(e), float(v)) for e, v in loop["curve"]]
            train_seconds, eval_seconds, first = loop["train_seconds"], loop["eval_seconds"], loop["epoch"]
    model.train()
    for epoch in range(first + 1, settings.max_epochs + 1):
        start = time.perf_counter()
        if strategy is not None:
            strategy.on_epoch_start(epoch)
        for batch in data.train:
            train_step(student, batch.to(device), optimizer, strategy, kd_weight, epoch)
        train_seconds += time.perf_counter() - start

        valid = None
        if epoch % settings.eval_every == 0 or epoch == settings.max_epochs:
            start = time.perf_counter()
            valid = full_ranking(model, data.valid, data.config).metrics[VALID_METRIC]
            eval_seconds += time.perf_counter() - start
            curve.append((epoch, valid))
            if valid > best:
                best, best_epoch = valid, epoch
                best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, valid)
        if strategy is not None and strategy.holds_early_stopping():
            held_until = epoch
        if (valid is not None and epoch - max(best_epoch, held_until) >= settings.patience
                and epoch >= settings.min_epochs):
            stopped_early = True
            break
        if checkpoint is not None and valid is not None and epoch < settings.max_epochs:
            checkpoint.save({"epoch": epoch, "best": best, "best_epoch": best_epoch, "best_state": best_state,
                             "held_until": held_until, "curve": [list(point) for point in curve],
                             "train_seconds": train_seconds, "eval_seconds": eval_seconds},
                            model, optimizer, data.train.generator, strategy)

    if checkpoint is not None:
        checkpoint.discard()
    model.load_state_dict(best_state)
    return FitResult(
        best_epoch=best_epoch,
        epochs_run=epoch,
        hit_epoch_cap=not stopped_early,
        best_valid=best,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        seconds_per_epoch=train_seconds / max(epoch, 1),
        valid_curve=curve,
        best_state=best_state,
    )
