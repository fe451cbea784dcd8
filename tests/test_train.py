"""The training loop: base loss plus weighted KD term, early stopping on validation NDCG@10, best weights kept."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from conftest import make_context
from kdbench.backbones import build_model
from kdbench.families import BackboneSpec
from kdbench.errors import KdbenchError
from kdbench.strategies.base import DistillationStrategy
from kdbench.training.loop import TrainingDiverged, TrainSettings, fit


def _bpr(data, dim: int = 4, seed: int = 0):
    from recbole.utils import init_seed

    init_seed(seed, True)
    return build_model(BackboneSpec("BPR", dim), data)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class ScriptedStrategy(DistillationStrategy):
    """A test strategy: its KD term is `(anchor - target)^2` on a training-only parameter."""

    name = "scripted"
    defaults = {"weight": 1.0, "target": 3.0}
    needs_teacher = False

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        self.anchor = nn.Parameter(torch.zeros(1))
        self.epochs_started: list[int] = []

    def on_epoch_start(self, epoch):
        self.epochs_started.append(epoch)

    def loss(self, batch):
        return ((self.anchor - self.hparams["target"]) ** 2).sum()


class NaNStrategy(ScriptedStrategy):
    def loss(self, batch):
        return torch.tensor(math.nan)


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"max_epochs": 0}, "max epochs must be >= 1"),
        ({"batch_size": 0}, "batch size must be >= 1"),
        ({"patience": 0}, "patience must be >= 1"),
        ({"eval_every": 0}, "eval every must be >= 1"),
        ({"learning_rate": 0.0}, "learning rate must be > 0"),
        ({"learning_rate": -1.0}, "learning rate must be > 0"),
        ({"learning_rate": math.nan}, "learning rate must be > 0"),
        ({"weight_decay": -0.1}, "weight decay must be >= 0"),
    ],
)
def test_settings_refuse_values_that_cannot_train(bad, message):
    with pytest.raises(KdbenchError, match=message):
        TrainSettings(**bad)


def test_settings_default_to_the_literatures_protocol():
    settings = TrainSettings()
    assert (settings.learning_rate, settings.batch_size, settings.patience) == (0.001, 2048, 10)
    assert settings.as_dict()["max_epochs"] == 300


# -- fitting ml-100k -------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_runs_the_requested_epochs_and_reports_them(ml100k_large_batches):
    data = ml100k_large_batches
    model = _bpr(data, dim=8)
    seen = []
    result = fit(model, data, TrainSettings(max_epochs=2, batch_size=4096), seed=0,
                 on_epoch=lambda epoch, valid: seen.append((epoch, valid)))
    assert result.epochs_run == 2
    assert result.hit_epoch_cap is True
    assert [epoch for epoch, _ in result.valid_curve] == [1, 2]
    assert seen == result.valid_curve
    assert result.best_valid == max(valid for _, valid in result.valid_curve)
    assert 0 < result.best_valid <= 1
    assert result.best_epoch in (1, 2)
    assert result.train_seconds > 0 and result.eval_seconds > 0
    assert result.seconds_per_epoch == pytest.approx(result.train_seconds / 2)
    assert "best_state" not in result.summary()
    assert _same_state(model.state_dict(), result.best_state)


# -- early stopping and the best weights (on the small synthetic dataset) ---------------------


def test_a_model_that_stops_improving_stops_early(toy):
    result = fit(_bpr(toy), toy, TrainSettings(max_epochs=50, patience=1, learning_rate=1e4), seed=0)
    assert result.hit_epoch_cap is False
    assert result.epochs_run < 50
    assert result.epochs_run == result.best_epoch + 1  # one evaluation without a gain
    assert result.best_valid == max(valid for _, valid in result.valid_curve)


def test_patience_counts_evaluations_without_a_gain(toy):
    result = fit(_bpr(toy), toy, TrainSettings(max_epochs=50, patience=3, learning_rate=1e4), seed=0)
    assert result.hit_epoch_cap is False
    tail = [valid for epoch, valid in result.valid_curve if epoch > result.best_epoch]
    assert len(tail) == 3
    assert all(valid <= result.best_valid for valid in tail)
    assert result.epochs_run == result.best_epoch + 3


def test_the_best_weights_are_restored_not_the_last(toy):
    model = _bpr(toy)
    snapshots = {}
    result = fit(model, toy, TrainSettings(max_epochs=50, patience=1, learning_rate=1e4), seed=0,
                 on_epoch=lambda epoch, valid: snapshots.__setitem__(epoch, copy.deepcopy(model.state_dict())))
    assert result.best_epoch < result.epochs_run
    assert _same_state(model.state_dict(), result.best_state)
    assert _same_state(model.state_dict(), snapshots[result.best_epoch])
    assert not _same_state(model.state_dict(), snapshots[result.epochs_run])


def test_hitting_the_epoch_cap_is_reported(toy):
    result = fit(_bpr(toy), toy, TrainSettings(max_epochs=3, patience=100), seed=0)
    assert result.epochs_run == 3 and result.hit_epoch_cap is True


def test_validation_runs_every_eval_every_epochs_and_after_the_last(toy):
    result = fit(_bpr(toy), toy, TrainSettings(max_epochs=5, eval_every=2, patience=100), seed=0)
    assert [epoch for epoch, _ in result.valid_curve] == [2, 4, 5]


def test_patience_counts_epochs_when_validating_every_few_epochs(toy):
    result = fit(_bpr(toy), toy, TrainSettings(max_epochs=60, eval_every=2, patience=3, learning_rate=1e4), seed=0)
    assert result.hit_epoch_cap is False
    assert all(epoch % 2 == 0 for epoch, _ in result.valid_curve)
    # validations at best + 2 (2 epochs < 3: go on) and best + 4 (4 >= 3: stop)
    assert result.epochs_run == result.best_epoch + 4
    assert [epoch for epoch, _ in result.valid_curve][-2:] == [result.best_epoch + 2, result.best_epoch + 4]


def test_a_cadence_of_one_validation_every_epoch_stays_in_every_identity_as_before():
    assert TrainSettings().as_dict()["eval_every"] == 1  # every committed record's `train` holds it
    assert TrainSettings(eval_every=5).as_dict()["eval_every"] == 5


def test_the_same_seed_trains_the_same_model(toy):
    first, second = _bpr(toy), _bpr(toy)
    fit(first, toy, TrainSettings(max_epochs=3, patience=100), seed=5)
    fit(second, toy, TrainSettings(max_epochs=3, patience=100), seed=5)
    assert _same_state(first.state_dict(), second.state_dict())


def test_the_seed_sets_the_batch_order(ml100k_large_batches):
    data = ml100k_large_batches  # several batches per epoch, so their order matters
    orders = []
    for seed in (1, 1, 2):
        data.train.generator.manual_seed(seed)
        orders.append(next(iter(data.train))[data.uid_field][:50].tolist())
    assert orders[0] == orders[1] != orders[2]


# -- the distillation term -------------------------------------------------------------------


def test_the_strategys_term_and_its_own_parameters_are_optimised(toy):
    strategy = ScriptedStrategy(make_context(toy, "BPR:4", "BPR:4"), target=3.0)
    fit(strategy.context.student.model, toy,
        TrainSettings(max_epochs=5, patience=100, learning_rate=0.5), strategy=strategy)
    assert strategy.anchor.item() == pytest.approx(3.0, abs=1.0)
    assert strategy.epochs_started == [1, 2, 3, 4, 5]


def test_a_zero_weight_leaves_the_training_parameters_of_the_strategy_alone(toy):
    strategy = ScriptedStrategy(make_context(toy, "BPR:4", "BPR:4"), weight=0.0)
    fit(strategy.context.student.model, toy, TrainSettings(max_epochs=2, patience=100, learning_rate=0.5),
        strategy=strategy)
    assert strategy.anchor.item() == 0.0


def test_a_zero_weight_strategy_trains_the_student_like_no_strategy(toy):
    plain = _bpr(toy)
    fit(plain, toy, TrainSettings(max_epochs=2, patience=100), seed=3)
    student = _bpr(toy)
    context = make_context(toy, "BPR:4", "BPR:4")
    context.student.model = student
    fit(student, toy, TrainSettings(max_epochs=2, patience=100), seed=3,
        strategy=ScriptedStrategy(context, weight=0.0))
    for name, tensor in plain.state_dict().items():
        torch.testing.assert_close(student.state_dict()[name], tensor)


def test_a_loss_that_turns_nan_stops_training_with_an_error(toy):
    strategy = NaNStrategy(make_context(toy, "BPR:4", "BPR:4"))
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        fit(strategy.context.student.model, toy, TrainSettings(max_epochs=2), strategy=strategy)


def test_early_stopping_waits_for_min_epochs(toy):
    result = fit(_bpr(toy), toy, TrainSettings(max_epochs=50, patience=1, learning_rate=1e4, min_epochs=8), seed=0)
    assert result.hit_epoch_cap is False
    assert result.epochs_run >= 8
    assert result.best_valid == max(valid for _, valid in result.valid_curve)


def test_min_epochs_is_left_out_of_records_when_unset():
    assert "min_epochs" not in TrainSettings().as_dict()  # older records and cache keys stay valid
    assert TrainSettings(min_epochs=30).as_dict()["min_epochs"] == 30


class CurriculumStrategy(ScriptedStrategy):
    """Holds early stopping for its first `hold` epochs, as a curriculum that ends in a final phase."""

    defaults = {**ScriptedStrategy.defaults, "hold": 8}

    def holds_early_stopping(self):
        return len(self.epochs_started) <= self.hparams["hold"]


def test_a_strategy_holding_early_stopping_trains_through_its_schedule_then_gets_its_patience(toy):
    """A diverging run (lr 1e4: the best validation is an early one) with patience 1 stops at once
    unless the strategy holds; held for 8 epochs it stops at epoch 8 + patience, not before."""
    settings = TrainSettings(max_epochs=50, patience=1, learning_rate=1e4)
    free = ScriptedStrategy(make_context(toy, "BPR:4", "BPR:4"), weight=0.0)
    unheld = fit(free.context.student.model, toy, settings, seed=0, strategy=free)
    held_strategy = CurriculumStrategy(make_context(toy, "BPR:4", "BPR:4"), weight=0.0)
    held = fit(held_strategy.context.student.model, toy, settings, seed=0, strategy=held_strategy)
    assert unheld.epochs_run < 8
    assert held.epochs_run == 8 + 1 and held.hit_epoch_cap is False
    assert held.best_valid == max(valid for _, valid in held.valid_curve)


def test_hetcomp_holds_early_stopping_until_its_list_wise_phase():
    from kdbench.strategies.hetcomp import HetComp

    strategy = HetComp.__new__(HetComp)
    strategy.listwise = False
    assert strategy.holds_early_stopping() is True
    strategy.listwise = True
    assert strategy.holds_early_stopping() is False
