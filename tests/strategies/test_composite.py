"""Composite strategies (`de+rrd`): parts with their own namespaced hyperparameters, summed losses."""

from __future__ import annotations

import pytest

from _helpers_response_feature import check_gradients, check_not_counted, ready
from kdbench.errors import KdbenchError
from kdbench.strategies import STRATEGIES
from kdbench.strategies.de import DE
from kdbench.strategies.rrd import RRD


def test_a_composite_is_built_on_request_and_not_listed_among_registered_strategies():
    cls = STRATEGIES.get("de+rrd")
    assert cls is STRATEGIES.get("de+rrd")  # built once
    assert cls.parts == (DE, RRD) and cls.family == "feature+ranking" and cls.needs_representations
    assert "de+rrd" not in STRATEGIES.names()
    assert cls.defaults["de.weight"] == DE.defaults["weight"] and cls.defaults["rrd.K"] == RRD.defaults["K"]


def test_each_part_keeps_its_own_namespaced_hyperparameters(ml100k):
    context, strategy = ready(ml100k, "de+rrd", **{"de.num_experts": 3, "rrd.K": 7, "rrd.weight": 0.5})
    de, rrd = strategy.members
    assert de.hparams["num_experts"] == 3 and de.hparams["weight"] == DE.defaults["weight"]
    assert rrd.hparams["K"] == 7 and rrd.weight == 0.5
    assert strategy.weight == 1.0


def test_the_loss_is_the_parts_losses_each_times_its_own_weight(ml100k, first_batch):
    hparams = {"de.num_experts": 3, "de.weight": 0.2, "rrd.weight": 0.05}
    context, strategy = ready(ml100k, "de+rrd", **hparams)
    de, rrd = strategy.members
    generator_state = de.generator.get_state()
    with context.student.one_forward_per_step():
        parts = [de.loss(first_batch).item(), rrd.loss(first_batch).item()]
    de.generator.set_state(generator_state)  # the same Gumbel noise for the composite's call
    with context.student.one_forward_per_step():
        combined = strategy.loss(first_batch).item()
    assert combined == pytest.approx(0.2 * parts[0] + 0.05 * parts[1], rel=1e-5)


def test_gradients_reach_the_student_and_the_experts_never_the_teacher(ml100k, first_batch):
    context, strategy = ready(ml100k, "de+rrd", **{"de.num_experts": 2})
    check_gradients(context, strategy, first_batch)
    assert any(name.startswith("members.0.user_experts") for name, _ in strategy.named_parameters())


def test_the_parts_training_only_modules_are_not_counted(ml100k, first_batch):
    check_not_counted(ml100k, "de+rrd", first_batch, **{"de.num_experts": 2})


def test_bad_composites_and_part_hyperparameters_are_refused(ml100k):
    with pytest.raises(KdbenchError, match="unknown strategy 'nope': valid: .*rrd"):
        STRATEGIES.get("de+nope")
    with pytest.raises(KdbenchError, match="two or more different strategies"):
        STRATEGIES.get("rrd+rrd")
    cls = STRATEGIES.get("kd+rrd")
    with pytest.raises(KdbenchError, match="unknown hyperparameter 'K'"):
        cls.resolve_hparams({"K": 3})  # the part's name must prefix it
    with pytest.raises(KdbenchError, match="'rrd.T' of strategy 'kd\\+rrd' must be > 0"):
        cls.resolve_hparams({"rrd.T": 0})


def test_the_search_space_and_code_version_come_from_the_parts():
    cls = STRATEGIES.get("kd+rrd")
    space = cls.tuning_space()
    assert set(space) == {f"kd.{k}" for k in STRATEGIES.get("kd").tuning_space()} | {
        f"rrd.{k}" for k in RRD.tuning_space()}
    assert cls.code_version() != STRATEGIES.get("kd").code_version()
