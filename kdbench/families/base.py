"""The family interface, its registry and the protocols families own; the dispatch on a model's family.

A *family* (RecBole's `ModelType`, as a registered object) is what differs between kinds of
recommenders: which models it holds (with their `ModelCard`s), what a query is, its evaluation
protocols and how data is loaded under them, the adapters through which strategies, the evaluator
and the cost measurement see a model, and the distillation context. Everything else (the trainer,
the runner, the strategies' code, the report) is shared, and asks the family: no module outside
`kdbench.families` tests a family's name.

A family is one file: a `Family` subclass decorated with `@register_family`, which registers the
family, its protocols (`PROTOCOLS`) and its models' cards (`backbones.MODELS`). Strategies declare
the families they run on (`register_strategy(..., backbones=(...))`); `Family.supports` reads that
declaration, `Family.required_hparams` adds what a family needs of a strategy on top.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from kdbench.backbones import MODELS, BackboneAdapter, ModelCard
from kdbench.data.loading import DEFAULT_SPLIT_SEED, PreparedData
from kdbench.errors import KdbenchError, choices
from kdbench.registry import Registry
from kdbench.strategies import STRATEGIES

DEFAULT_PROTOCOL = "random"  # the protocol of a cell that names none (the general family's default)


@dataclass(frozen=True)
class Protocol:
    """A named split-and-mask preset of one family. `order`: "random" (RecBole RS/RO), "file" (a
    timestamp column, then file order) or "time"; `test_mask`: the items removed from a user's test
    ranking; `settings`: what a cell's identity and the teacher cache key hold for it."""

    name: str
    family: str
    order: str
    test_mask: str
    summary: str
    settings: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def identity(self) -> dict[str, Any]:
        return self.settings


FAMILIES: Registry["Family"] = Registry("backbone family")
PROTOCOLS: Registry[Protocol] = Registry("protocol")


class Family(ABC):
    """One kind of recommender. Subclasses set the class attributes and implement loading and the
    adapters; the checks of a pairing are shared."""

    name: ClassVar[str]
    query: ClassVar[str]  # what a query is, in words
    default_protocol: ClassVar[str]  # the protocol a run without --protocol gets
    protocols: ClassVar[tuple[Protocol, ...]] = ()
    cards: ClassVar[tuple[ModelCard, ...]] = ()  # the models kdbench knows something particular of
    catalogue_cost: ClassVar[bool] = True  # `kdbench cost` measures its shapes on synthetic catalogues
    # hyperparameters a strategy must hold on this family: strategy -> {key: value}
    required_hparams: ClassVar[dict[str, dict[str, Any]]] = {}

    def models(self) -> tuple[str, ...]:
        """Every model a spec of this family may name."""
        return tuple(card.name for card in self.cards)

    def knows(self, model: str) -> bool:
        return model in self.models()

    def model_settings(self, data_config) -> dict[str, Any]:
        """RecBole config keys every model of the family takes from its data's config."""
        return {}

    def has_representations(self, model: str) -> bool:
        """Whether the family's adapter gives `model`'s query and item representations."""
        card = MODELS.get(model) if model in MODELS else None
        return card is not None and card.representations is not None

    @abstractmethod
    def load(self, dataset: str, data_path: str | None, model: str, batch_size: int, split_seed: int,
             device: str, work_dir: str | Path, protocol: Protocol) -> PreparedData:
        """`dataset` split under `protocol` (one of this family's) for `model`."""

    @abstractmethod
    def context(self, data: PreparedData, student: nn.Module, teacher: nn.Module | None = None,
                device: str = "cpu", seed: int = 0):
        """The strategies' `DistillationContext` of a run on `data`."""

    @abstractmethod
    def evaluation_adapter(self, model: nn.Module, uid_field: str, iid_field: str) -> BackboneAdapter:
        """The adapter that scores an evaluation loader's batches."""

    @abstractmethod
    def cost_adapter(self, model: nn.Module, data: PreparedData) -> tuple[BackboneAdapter, int]:
        """(adapter, number of queries) on which a run's inference cost is measured."""

    # -- the checks of a pairing, shared ------------------------------------------------------------
    def supports(self, strategy: str) -> bool:
        """Whether `strategy` declares this family (a composite: all of its parts do)."""
        return STRATEGIES.get(strategy).runs_on(self.name)

    def check_strategy(self, strategy: str, hparams: dict[str, Any] | None = None) -> None:
        """One line naming the problem and the strategies the family supports."""
        if not self.supports(strategy):
            valid = [name for name in STRATEGIES.names() if self.supports(name)]
            raise KdbenchError(f"strategy '{strategy}' does not apply to {self.name} backbones (a query is "
                               f"{self.query}): valid for them: {choices(valid)}")
        required = self.required_hparams.get(strategy, {})
        resolved = STRATEGIES.get(strategy).resolve_hparams(dict(hparams or {})) if required else {}
        for key, value in required.items():
            if resolved.get(key) != value:
                raise KdbenchError(f"strategy '{strategy}' on {self.name} backbones needs {key}={value} "
                                   f"(got {resolved.get(key)}): pass --hp {key}={value} or set it in the suite")

    def check_protocol(self, protocol: str, model: Any) -> Protocol:
        """The preset called `protocol`, after checking that it is one of this family's."""
        preset = PROTOCOLS.get(protocol)
        if preset.family != self.name:
            valid = [p.name for p in PROTOCOLS.values() if p.family == self.name]
            raise KdbenchError(f"protocol '{protocol}' is not for {self.name} backbones ({model}): valid: "
                               f"{choices(valid)}")
        return preset

    def check_representations(self, model: str, strategy: str) -> None:
        """Refuse a model whose representations a feature strategy needs and the adapter lacks."""
        if not self.has_representations(model):
            valid = [name for name in MODELS if self.knows(name) and self.has_representations(name)]
            raise KdbenchError(f"strategy '{strategy}' needs user/item representations, which kdbench "
                               f"provides for {choices(valid)}; not for {model}")


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: register the family, its protocols and its models' cards."""
    family = cls()
    FAMILIES.register(cls.name)(family)
    for protocol in cls.protocols:
        PROTOCOLS.register(protocol.name)(protocol)
    for card in cls.cards:
        MODELS.register(card.name)(card)
    return cls


# -- the dispatch ---------------------------------------------------------------------------------
def get_protocol(name: str) -> Protocol:
    """The preset called `name`, or one line naming the valid ones."""
    return PROTOCOLS.get(name)


def known_models() -> tuple[str, ...]:
    """Every model a spec may name, across the families."""
    return tuple(sorted({model for family in FAMILIES.values() for model in family.models()}))


def family_of(spec: Any) -> Family:
    """The family of a spec (anything with a `model`) or of a model's name."""
    declared = getattr(spec, "family_name", None)  # a teacher file's spec names its family
    if declared is not None:
        if declared not in FAMILIES.names():
            raise KdbenchError(f"teacher {spec} declares family '{declared}': valid: {choices(FAMILIES.names())}")
        return FAMILIES.get(declared)
    model = getattr(spec, "model", spec)
    for family in FAMILIES.values():
        if family.knows(model):
            return family
    raise KdbenchError(f"unknown model '{model}': valid: {choices(known_models())}")


def family_of_model(model: nn.Module) -> Family:
    """The family of a built model: its card's, else the family named by the model's RecBole
    declaration (`type = ModelType.SEQUENTIAL`, as RecBole dispatches), else the general one (a
    model outside the cards: a plugin's or a test's toy)."""
    name = type(model).__name__
    if any(family.knows(name) for family in FAMILIES.values()):
        return family_of(name)
    declared = str(getattr(getattr(model, "type", None), "name", "general")).lower()
    return FAMILIES.get(declared) if declared in FAMILIES.names() else FAMILIES.get("general")


def default_protocol(spec: Any) -> str:
    """The protocol a run without --protocol gets: its family's (`random`, `leave-one-out`)."""
    return family_of(spec).default_protocol


def load_data(
    dataset: str,
    data_path: str | None = None,
    model: str = "BPR",
    batch_size: int = 2048,
    split_seed: int = DEFAULT_SPLIT_SEED,
    device: str = "cpu",
    work_dir: str | Path = ".kdbench_cache",
    protocol: str = DEFAULT_PROTOCOL,
) -> PreparedData:
    """`dataset` loaded and split under `protocol` for `model`'s family; every model of a run shares
    these loaders."""
    family = family_of(model)
    preset = family.check_protocol(protocol, model)
    return family.load(dataset, data_path, model, batch_size, split_seed, device, work_dir, preset)


def check_pairing(teacher: Any, student: Any, strategy: str, protocol: str,
                  hparams: dict[str, Any] | None = None) -> Family:
    """The pairing's family, after checking that teacher and student share it, that the protocol
    is the family's and that the strategy applies to it (the teacher's own row: any)."""
    family = family_of(teacher)
    if family_of(student) is not family:
        raise KdbenchError(f"teacher {teacher} is a {family.name} backbone and student {student} a "
                           f"{family_of(student).name} one: a pairing stays within one family")
    family.check_protocol(protocol, teacher)
    if strategy != "teacher":
        family.check_strategy(strategy, hparams)
    return family
