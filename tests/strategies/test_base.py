"""The strategy base: the context's generators, hyperparameter casting, registration, search
spaces and the code version that marks stored results stale."""

from __future__ import annotations


import pytest
import torch

from _helpers_sampling import fixed_context
from kdbench.errors import KdbenchError
from kdbench.search_space import IntRange, LogUniform
from kdbench.strategies import STRATEGIES, DistillationStrategy, register_strategy
from kdbench.strategies.cd import CD
from kdbench.strategies.rd import RD
from kdbench.strategies.rrd import RRD, RRDTopK


# -- the context -------------------------------------------------------------------------------
def test_generators_are_reproducible_per_seed_and_offset_and_differ_between_them():
    def draws(seed: int, offset: int | None = None) -> torch.Tensor:
        context = fixed_context()
        context.seed = seed
        generator = context.generator() if offset is None else context.generator(offset=offset)
        return torch.rand(8, generator=generator)

    assert torch.equal(draws(3, 1), draws(3, 1))
    assert torch.equal(draws(3), draws(3, 0))  # the default offset is 0
    assert not torch.equal(draws(3, 0), draws(3, 1)) and not torch.equal(draws(3, 1), draws(4, 1))


def test_a_strategy_without_a_teacher_is_refused_by_name():
    context = fixed_context()
    context.teacher = None
    with pytest.raises(KdbenchError, match="^strategy 'cd' needs a teacher$"):
        CD(context)


def test_batch_items_are_the_positives_then_the_sampled_negatives():
    from recbole.data.interaction import Interaction

    strategy = CD(fixed_context())
    users, positives, negatives = torch.tensor([1, 2]), torch.tensor([5, 6]), torch.tensor([7, 8])
    with_negatives = Interaction({"user_id": users, "item_id": positives, "neg_item_id": negatives})
    assert strategy.batch_items(with_negatives).tolist() == [5, 6, 7, 8]
    assert strategy.batch_items(Interaction({"user_id": users, "item_id": positives})).tolist() == [5, 6]
    assert strategy.batch_users(with_negatives).tolist() == [1, 2]


# -- hyperparameters -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [True, "true", "True", "YES", "yes", "1", 1])
def test_a_boolean_hyperparameter_reads_true(raw):
    assert RD.resolve_hparams({"dynamic": raw})["dynamic"] is True


@pytest.mark.parametrize("raw", [False, "false", "0", "no", "off", 0])
def test_a_boolean_hyperparameter_reads_false(raw):
    assert RD.resolve_hparams({"dynamic": raw})["dynamic"] is False


def test_an_integer_hyperparameter_takes_whole_numbers_only():
    assert RRD.resolve_hparams({"K": "7"})["K"] == 7 and isinstance(RRD.resolve_hparams({"K": 7.0})["K"], int)
    with pytest.raises(KdbenchError, match="^hyperparameter 'K' of strategy 'rrd' must be int, got '2.5'$"):
        RRD.resolve_hparams({"K": 2.5})


def test_a_float_hyperparameter_error_names_the_strategy_and_the_value():
    assert CD.resolve_hparams({"T": "0.5"})["T"] == 0.5
    with pytest.raises(KdbenchError, match="^hyperparameter 'T' of strategy 'cd' must be float, got 'hot'$"):
        CD.resolve_hparams({"T": "hot"})


# -- registration --------------------------------------------------------------------------------
def test_a_strategy_registered_without_a_paper_has_an_empty_one(monkeypatch):
    monkeypatch.setattr(STRATEGIES, "_items", dict(STRATEGIES._items))

    @register_strategy("paperless-kd", family="response")
    class Paperless(DistillationStrategy):
        def loss(self, batch):
            return None

    assert Paperless.paper == "" and Paperless.name == "paperless-kd" and STRATEGIES.get("paperless-kd") is Paperless


# -- search spaces ---------------------------------------------------------------------------------
def test_an_undeclared_search_space_tunes_the_weight_over_four_decades(monkeypatch):
    monkeypatch.setattr(RRD, "search_space", None)
    assert RRD.tuning_space() == {"weight": LogUniform(0.001 / 100, 0.001 * 100)}
    monkeypatch.setattr(RRD, "defaults", dict(RRD.defaults, weight=0.0))
    assert RRD.tuning_space() == {"weight": LogUniform(0.01, 100.0)}  # a zero weight centres on 1
    monkeypatch.setattr(RRD, "defaults", {"K": 40})
    assert RRD.tuning_space() == {}


def test_a_declared_search_space_is_returned_as_a_copy_and_checked(monkeypatch):
    space = RRD.tuning_space()
    assert space == RRD.search_space and space is not RRD.search_space
    space.clear()
    assert RRD.tuning_space()
    monkeypatch.setattr(RRD, "search_space", {"K": IntRange(5, 10), "tau": LogUniform(1.0, 2.0)})
    with pytest.raises(KdbenchError, match="search space of strategy 'rrd' names unknown hyperparameters \\['tau'\\]"):
        RRD.tuning_space()


# -- the code version ------------------------------------------------------------------------------
def _reached(cls) -> set[tuple[str, str]]:
    from kdbench.strategies._code import class_roots, reachable_definitions

    return set(reachable_definitions(class_roots(cls, DistillationStrategy)))


def test_a_strategys_code_is_the_definitions_its_loss_can_reach():
    reached = _reached(CD)
    assert {("kdbench.strategies.cd", "CD"), ("kdbench.strategies.cd", "cd_loss"),
            ("kdbench.strategies.knowledge", "teacher_top_n")} <= reached
    assert not any(module == "kdbench.strategies.base" for module, _ in reached)  # the interface
    assert not any(module == "kdbench.strategies.rrd" for module, _ in reached)
    assert {("kdbench.strategies.rrd", "RRD"), ("kdbench.strategies.rrd", "RRDTopK"),
            ("kdbench.strategies._sampling", "sample_allowed")} <= _reached(RRDTopK)


def test_a_base_class_that_is_no_strategy_is_not_part_of_a_strategys_code():
    import json

    class Mixed(json.JSONEncoder, DistillationStrategy):  # a mixin from a module of no strategy
        pass

    from kdbench.strategies._code import class_roots

    roots = class_roots(Mixed, DistillationStrategy)
    assert roots == [(__name__, "test_a_base_class_that_is_no_strategy_is_not_part_of_a_strategys_code.<locals>.Mixed")]


def test_strategy_code_is_the_code_version_hashed_once_a_process(monkeypatch):
    from kdbench.strategies import strategy_code

    assert strategy_code("cd") == CD.code_version()
    monkeypatch.setattr(CD, "code_version", classmethod(lambda cls: "not asked again"))
    assert strategy_code("cd") != "not asked again"  # verify asks it for each of ~10^3 stored runs


def test_the_code_version_is_stable_and_tells_strategies_apart():
    assert CD.code_version() == CD.code_version() and len(CD.code_version()) == 12
    int(CD.code_version(), 16)
    assert RRD.code_version() != RRDTopK.code_version()  # RRDTopK reaches RRD and its own override
    assert CD.code_version() != RRD.code_version()
