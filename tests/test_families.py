"""Backbone families as registered objects: a new family is one file. The toy family below is
declared here, in the test, as a new `kdbench/families/<name>.py` would be (its models' cards, its
protocol, loading and adapters), and the shared code finds it everywhere: specs, protocols, data
loading, the pairing check, strategy support, the memory estimate, the runner's validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdbench.backbones import MODELS, BackboneAdapter, ModelCard
from kdbench.run.cells import Cell
from kdbench.errors import KdbenchError
from kdbench.families import (FAMILIES, PROTOCOLS, BackboneSpec, Family, Protocol, check_pairing, default_protocol,
                              family_of, family_of_model, get_protocol, load_data, register_family)
from kdbench.run.memory import model_bytes
from kdbench.run.runner import validate_cells
from kdbench.strategies import STRATEGIES, DistillationStrategy, register_strategy


class ToyRec(nn.Module):
    """A model of the toy family: one embedding table per user and per item."""

    def __init__(self, n: int = 5, dim: int = 3):
        super().__init__()
        self.users, self.items = nn.Embedding(n, dim), nn.Embedding(n, dim)


def _toy_tables(model):
    return model.users.weight, model.items.weight


class ToyFamily(Family):
    name = "toy"
    query = "a toy id"
    default_protocol = "toy-split"
    protocols = (Protocol("toy-split", "toy", "random", "nothing", "a toy split", {"preset": "toy-split"}),)
    cards = (ModelCard("ToyRec", options={"L": "n_layers"}, representations=_toy_tables, dot_product=True,
                       tables_per_row=3),)

    def __init__(self):
        self.loaded = []

    def load(self, dataset, data_path, model, batch_size, split_seed, device, work_dir, protocol):
        self.loaded.append((dataset, model, protocol.name))
        return f"{dataset} split for {model}"

    def context(self, data, student, teacher=None, device="cpu", seed=0):
        raise NotImplementedError

    def evaluation_adapter(self, model, uid_field, iid_field):
        return BackboneAdapter(model, uid_field, iid_field)

    def cost_adapter(self, model, data):
        return BackboneAdapter(model, "user_id", "item_id"), 5


@pytest.fixture
def toy():
    """The toy family and a strategy declared for it, registered for one test only."""
    saved = [(registry, dict(registry._items)) for registry in (FAMILIES, PROTOCOLS, MODELS, STRATEGIES)]
    built = dict(STRATEGIES._built)
    register_family(ToyFamily)

    @register_strategy("toy-kd", family="response", paper="a test strategy", backbones=("toy",))
    class ToyKD(DistillationStrategy):
        defaults = {"weight": 1.0}

        def loss(self, batch):
            return None

    yield FAMILIES["toy"]
    for registry, items in saved:
        registry._items = items
    STRATEGIES._built = built


def test_a_family_registered_in_its_own_file_owns_its_models_and_protocols(toy):
    spec = BackboneSpec.parse("toyrec:8:L2")
    assert spec == BackboneSpec("ToyRec", 8, (("L", 2),)) and spec.family is toy and family_of("ToyRec") is toy
    assert spec.size_overrides() == {"embedding_size": 8, "n_layers": 2}
    assert default_protocol(spec) == "toy-split" and get_protocol("toy-split").family == "toy"
    assert family_of_model(ToyRec()) is toy
    # the memory estimate reads the card: (9 + 1 + 9 + 1) rows x 8 dims x 3 tables x 4 bytes
    assert model_bytes(spec, 9, 9) == 20 * 8 * 3 * 4
    with pytest.raises(KdbenchError, match="unknown option 'H' for ToyRec: valid: L \\(n_layers\\)"):
        BackboneSpec.parse("ToyRec:8:H2")


def test_the_adapter_reads_the_cards_representations_and_dot_product(toy):
    model = ToyRec()
    adapter = BackboneAdapter(model, "user_id", "item_id")
    users, items = torch.tensor([0, 1]), torch.tensor([[2, 3], [4, 0]])
    expected = (model.users.weight[users].unsqueeze(1) * model.items.weight[items]).sum(-1)
    assert adapter.has_representations and torch.allclose(adapter.score(users, items), expected)


def test_loading_dispatches_to_the_family_under_its_own_protocols_only(toy):
    assert load_data("anything", model="ToyRec", protocol="toy-split") == "anything split for ToyRec"
    assert toy.loaded == [("anything", "ToyRec", "toy-split")]
    with pytest.raises(KdbenchError, match="protocol 'random' is not for toy backbones \\(ToyRec\\): valid: toy-split"):
        load_data("anything", model="ToyRec")
    with pytest.raises(KdbenchError, match="protocol 'toy-split' is not for general backbones"):
        load_data("ml-100k", model="BPR", protocol="toy-split")


def test_the_pairing_check_asks_the_family_and_what_strategies_declare(toy):
    teacher, student = BackboneSpec.parse("ToyRec:8"), BackboneSpec.parse("ToyRec:4")
    assert check_pairing(teacher, student, "toy-kd", "toy-split") is toy
    assert check_pairing(teacher, student, "scratch", "toy-split") is toy  # scratch runs on every family
    assert toy.supports("toy-kd+scratch") and not toy.supports("toy-kd+kd")  # a composite: every part's
    assert not FAMILIES["general"].supports("toy-kd") and FAMILIES["general"].supports("kd")
    with pytest.raises(KdbenchError, match="strategy 'rrd' does not apply to toy backbones \\(a query is a toy id\\): "
                                           "valid for them: scratch, toy-kd$"):
        check_pairing(teacher, student, "rrd", "toy-split")
    with pytest.raises(KdbenchError, match="teacher ToyRec:8 is a toy backbone and student BPR:4 a general one"):
        check_pairing(teacher, BackboneSpec.parse("BPR:4"), "scratch", "toy-split")


def test_a_strategy_that_declares_no_family_runs_on_the_general_one_only(toy):
    @register_strategy("plain-kd", family="response", paper="a test strategy")
    class PlainKD(DistillationStrategy):
        def loss(self, batch):
            return None

    assert [family.name for family in FAMILIES.values() if family.supports("plain-kd")] == ["general"]


def test_every_declared_family_is_registered():
    for name in STRATEGIES.names():
        assert set(STRATEGIES.get(name).backbones) <= set(FAMILIES.names()) | {"*"}, name


def test_the_runner_validates_a_toy_cell_as_any_other(toy):
    cell = Cell("ml-100k", BackboneSpec.parse("ToyRec:8"), BackboneSpec.parse("ToyRec:4"), "toy-kd", 0,
                protocol="toy-split")
    assert validate_cells([cell]) == [cell]
    with pytest.raises(KdbenchError, match="strategy 'kd-full' does not apply to toy backbones"):
        validate_cells([Cell("ml-100k", cell.teacher, cell.student, "kd-full", 0, protocol="toy-split")])


def test_the_toy_family_is_gone_after_its_test():
    assert "toy" not in FAMILIES and "toy-split" not in PROTOCOLS and "ToyRec" not in MODELS
    assert "toy-kd" not in STRATEGIES
