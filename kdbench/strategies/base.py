"""The strategy interface and its registry.

A strategy is one class and one decorator:

    @register_strategy("rrd", family="ranking", paper="Kang et al., DE-RRD, CIKM 2020",
                       backbones=("general", "sequential"))
    class RRD(DistillationStrategy):
        defaults = {"weight": 0.001, "K": 40, ...}
        def prepare(self): ...            # teacher knowledge, once per run
        def on_epoch_start(self, epoch): ...  # resampling
        def loss(self, batch): ...        # the KD term on a training batch

The trainer minimises `student base loss + weight * strategy.loss(batch)`. The teacher is frozen
(`eval()`, no grad) and is not a submodule of the strategy; the strategy's own submodules
(projectors, experts) are training-only: optimised with the student, never deployed or counted.
A strategy that trains the teacher further (`updates_teacher`, BD) gets a private trainable copy
of the cached teacher instead, and the trainer optimises its parameters with the student's; its
loss then holds the teacher's terms too. The cached teacher is never written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import scipy.sparse as sp
import torch
from torch import nn

from kdbench.backbones import BackboneAdapter
from kdbench.errors import KdbenchError, choices
from kdbench.registry import Registry
from kdbench.strategies._code import class_roots, code_version
from kdbench.search_space import CatalogueShare, Distribution, check_space, weight_space

STRATEGIES: Registry[type["DistillationStrategy"]] = Registry("strategy")


def strategy_code(name: str) -> str:
    """The registered strategy's `code_version()`, hashed once a process for each class: its
    sources are read once (`_code._module_index`), so the hash cannot change while the process runs,
    and `verify` and the runner ask it for every stored run."""
    return _class_code_version(STRATEGIES.get(name))


@lru_cache(maxsize=None)
def _class_code_version(strategy: type["DistillationStrategy"]) -> str:
    return strategy.code_version()


FAMILIES = ("baseline", "response", "feature", "ranking", "topology", "compression")
# Compression baselines (SVD, pruning, quantisation of the teacher) are no distillation method: `all`
# leaves them out (they run when named: suites/compression.yaml).
COMPRESSION = "compression"
# The backbone families (`kdbench.families`) a strategy runs on unless it declares others, and the
# declaration for every family (a strategy that uses nothing of the backbone but its own loss).
DEFAULT_BACKBONES, ANY_BACKBONE = ("general",), "*"
# A strategy name is a path component of its results (`runs/<dataset>/<pairing>/<name>/seedN.json`)
# and a word of the command line: lowercase letters, digits, '-' and '_', starting with a letter.
# '+' joins composites, so it is not allowed; the reserved names are the results' own folders.
STRATEGY_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
RESERVED_NAMES = frozenset({"teacher", "all", "defaults", "tuned"})
# Hyperparameters read as probabilities by name: any strategy's value must lie in [0, 1].
PROBABILITIES = frozenset({"keep_prob", "dropout", "drop_prob"})
INT64_MAX = 2**63 - 1
# The words a boolean hyperparameter accepts (any other word is refused, never read as False).
TRUE_WORDS, FALSE_WORDS = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


@dataclass
class DistillationContext:
    """What a strategy may use: the frozen teacher, the student, and the training data."""

    teacher: BackboneAdapter | None
    student: BackboneAdapter
    n_users: int
    n_items: int
    history: sp.csr_matrix  # users x items training interactions (never evaluation data)
    uid_field: str
    iid_field: str
    neg_iid_field: str
    device: torch.device
    seed: int = 0
    # The ensemble's training trajectories (`kdbench.training.trajectory`), the pairing's teacher first, for a
    # strategy that declares `ensemble_teachers` (HetComp); empty otherwise.
    trajectories: tuple[dict[str, torch.Tensor], ...] = ()

    @classmethod
    def build(cls, data, student: nn.Module, teacher: nn.Module | None = None, device: str = "cpu",
              seed: int = 0) -> "DistillationContext":
        """The context of a run on `data` (a kdbench.data.loading.PreparedData): the one place runner,
        tuner, tests and benchmarks build it."""
        fields = (data.uid_field, data.iid_field)
        return cls(
            teacher=BackboneAdapter(teacher, *fields) if teacher is not None else None,
            student=BackboneAdapter(student, *fields),
            n_users=data.n_users, n_items=data.n_items, history=data.history,
            uid_field=data.uid_field, iid_field=data.iid_field, neg_iid_field=data.neg_iid_field,
            device=torch.device(device), seed=seed,
        )

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator for the strategy's own sampling, seeded from the run's seed."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)


def register_strategy(name: str, family: str, paper: str = "", variant_of: str | None = None,
                      backbones: tuple[str, ...] = DEFAULT_BACKBONES, file_teacher: str | None = None,
                      after_training: bool = False):
    """Class decorator: register a DistillationStrategy subclass under `name`.

    `family`: the kind of knowledge it distils (`FAMILIES`). `backbones`: the backbone families it
    runs on (`kdbench.families`; `("*",)`: all of them), general only unless declared; a composite
    runs on those all its parts declare. `variant_of`: the registered strategy this one is a variant
    of (another sampling scheme of the same paper, say). Variants run when named; `all` (the default
    suite's leaderboard, `tune --all`) keeps one row per method and leaves them out.
    `file_teacher`: the strategy can learn from a teacher file (`kdbench.training.teacher_file`: top-K lists
    and scores, item embeddings), reading no more of each list than this hyperparameter says (its
    `top_n` or `K`, which must not exceed the file's K); None (the default): it needs the teacher
    model itself (scores off the lists, a forward pass, hidden features).
    `after_training`: the strategy adds no loss and changes only the model deployed once training
    ends (post-training quantisation), so its training, validation and tuning objective are those of
    the strategy it follows: scratch's alone, the trained part's in a composite (`kd+ptq`: kd's);
    its tuned row takes that study's choice (`tuned_through`).
    """
    check_strategy_name(name)
    if isinstance(backbones, str) or not backbones:
        raise KdbenchError(f"strategy '{name}': backbones must be a non-empty tuple of family names")
    if family not in FAMILIES:
        raise KdbenchError(f"unknown strategy family '{family}': valid: {choices(FAMILIES)}")
    if variant_of is not None and variant_of not in STRATEGIES:
        raise KdbenchError(f"strategy '{name}' is a variant of '{variant_of}', which is not registered: "
                           f"valid: {choices(STRATEGIES.names())}")

    def decorator(cls: type["DistillationStrategy"]) -> type["DistillationStrategy"]:
        cls.name, cls.family, cls.paper, cls.variant_of = name, family, paper, variant_of
        cls.backbones = tuple(backbones)
        cls.file_teacher = file_teacher
        cls.after_training = after_training
        return STRATEGIES.register(name)(cls)

    return decorator


def tuned_through(strategy: str) -> tuple[str, str]:
    """(the strategy whose study tunes `strategy`, the prefix its hyperparameters take in `strategy`).

    Its own study, except for a strategy that only changes what is deployed after training
    (`after_training`: post-training quantisation), whose training and validation, so its tuning
    objective, are another's: `ptq` alone is the scratch student quantised (scratch's study), and a
    composite of one trained part and such parts is that part's student quantised (`kd+ptq`: kd's
    study, its hyperparameters named `kd.K` there). A second study of the same objective would spend
    the budget again and could choose another float model than the row it quantises."""
    chosen = STRATEGIES.get(strategy)
    if chosen.after_training:
        return "scratch", ""  # the baseline strategy (scratch.py)
    parts = getattr(chosen, "parts", ())
    trained = [part for part in parts if not part.after_training]
    if len(trained) == 1 and len(parts) > 1:
        return trained[0].name, f"{trained[0].name}."
    return strategy, ""


def check_strategy_name(name: Any) -> None:
    """Refuse a name that could not be a results folder or a command-line word: checked once, at
    registration, so no registered strategy can write outside its pairing's folder."""
    if not isinstance(name, str) or not STRATEGY_NAME.fullmatch(name):
        raise KdbenchError(f"invalid strategy name {name!r}: a name is 1-64 lowercase letters, digits, "
                           "'-' or '_', starting with a letter")
    if name in RESERVED_NAMES:
        raise KdbenchError(f"invalid strategy name '{name}': reserved (valid names avoid: "
                           f"{choices(sorted(RESERVED_NAMES))})")


def method_names() -> list[str]:
    """What `all` means: every registered strategy that is neither a variant of another nor a
    compression baseline."""
    return [name for name in STRATEGIES.names()
            if STRATEGIES.get(name).variant_of is None and STRATEGIES.get(name).family != COMPRESSION]


class DistillationStrategy(nn.Module):
    """Base class: hyperparameter handling and no-op hooks. See the module docstring."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    variant_of: ClassVar[str | None] = None  # see register_strategy
    backbones: ClassVar[tuple[str, ...]] = DEFAULT_BACKBONES  # see register_strategy
    file_teacher: ClassVar[str | None] = None  # see register_strategy
    after_training: ClassVar[bool] = False  # see register_strategy
    defaults: ClassVar[dict[str, Any]] = {"weight": 1.0}
    must_be_positive: ClassVar[tuple[str, ...]] = ()  # hyperparameters that must be > 0, not just >= 0
    needs_representations: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = True
    # The strategy learns from the training trajectories (`kdbench.training.trajectory`) of an ensemble: the
    # pairing's teacher and the teachers `ensemble_teachers` names; the runner trains or loads each
    # one through the teacher cache and hands their trajectories over in the context (HetComp).
    needs_trajectories: ClassVar[bool] = False
    # The strategy trains the teacher further (BD): the runner gives it a trainable copy of the
    # cached teacher (train mode, gradients on), the optimiser takes that copy's parameters too,
    # and the run's record says `teacher_trained_further`.
    updates_teacher: ClassVar[bool] = False
    # What `kdbench tune` may try (kdbench.search_space). None: not declared, so the tuner tries the
    # weight alone over 4 decades around its default; {}: nothing of the strategy's own to tune.
    search_space: ClassVar[dict[str, Distribution] | None] = None
    # False: the model is not trained at all (SVD, one-shot pruning, quantisation): `fit` validates
    # it once as `prepare` left it (0 epochs) and the run is tested and measured as usual.
    trains: ClassVar[bool] = True
    # True: the model the run trains and deploys is not the student built for the cell but the one
    # `model_to_train` returns (a compressed copy of the teacher); such a strategy joins no composite.
    replaces_student: ClassVar[bool] = False

    def __init__(self, context: DistillationContext, **hparams: Any):
        super().__init__()
        self.context = context
        self.hparams = self.resolve_hparams(hparams)
        if self.needs_teacher and context.teacher is None:
            raise KdbenchError(f"strategy '{self.name}' needs a teacher")
        if self.needs_representations:
            context.student.require_representations(self.name)
            context.teacher.require_representations(self.name)

    @classmethod
    def runs_on(cls, backbone_family: str) -> bool:
        """Whether the strategy declares the backbone family `backbone_family`."""
        return backbone_family in cls.backbones or ANY_BACKBONE in cls.backbones

    @classmethod
    def learns_from_files(cls) -> bool:
        """Whether a teacher file can teach it: it declares `file_teacher`, or needs no teacher."""
        return cls.file_teacher is not None or not cls.needs_teacher

    @classmethod
    def resolve_hparams(cls, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults updated by `given`; values cast to the default's type, checked >= 0, and > 0
        for the keys in `must_be_positive`."""
        resolved = dict(cls.defaults)
        for key, raw in given.items():
            if key not in cls.defaults:
                raise KdbenchError(
                    f"unknown hyperparameter '{key}' for strategy '{cls.name}': valid: {choices(cls.defaults)}"
                )
            resolved[key] = _cast(cls.name, key, raw, cls.defaults[key])
        for key in cls.must_be_positive:
            if not resolved[key] > 0:
                raise KdbenchError(f"hyperparameter '{key}' of strategy '{cls.name}' must be > 0, got {resolved[key]}")
        for key, value in resolved.items():
            if key.rpartition(".")[2] in PROBABILITIES and not isinstance(value, bool) and value > 1:
                raise KdbenchError(f"hyperparameter '{key}' of strategy '{cls.name}' is a probability: "
                                   f"it must be in [0, 1], got {value}")
        return resolved

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any], n_users: int, n_items: int) -> None:
        """Refuse resolved hyperparameters that cannot fit the dataset, before anything trains
        (`run.validation`). Declared generically, by name: a strategy with a `top_n` pool and `K`
        draws its K items from the teacher's top_n unobserved items, and `L` more from outside it
        when it has `L` (RRD, DCD), so 1 <= K <= top_n and top_n (+ L) <= n_items - 1. Other
        catalogue shares (CD's N) are clipped to the catalogue by their strategy. Override (calling
        this) for other rules."""
        if "top_n" not in hparams or "K" not in hparams:
            return
        top_n, k = hparams["top_n"], hparams["K"]
        if not 1 <= top_n <= n_items - 1:
            raise KdbenchError(f"hyperparameter 'top_n' of strategy '{cls.name}' is a number of items: it must "
                               f"be in [1, {n_items - 1}] on this dataset ({n_items} items), got {top_n}")
        if top_n < k:
            raise KdbenchError(f"strategy '{cls.name}': top_n ({top_n}) must be >= K ({k}): "
                               "the K items come from the teacher's top_n")
        if "L" in hparams and top_n + hparams["L"] > n_items - 1:
            raise KdbenchError(f"strategy '{cls.name}' needs top_n + L = {top_n + hparams['L']} items besides "
                               f"each user's own, more than this dataset's {n_items} items: lower top_n or L")

    @classmethod
    def check_models(cls, teacher: str, student: str) -> None:
        """Refuse (KdbenchError) a pairing of RecBole models the strategy cannot apply to, before
        anything trains (`run.validation`). Default: any."""

    @classmethod
    def tuning_space(cls) -> dict[str, Distribution]:
        """The strategy's own search space (the training knobs are added by the tuner)."""
        if cls.search_space is None:
            return {"weight": weight_space(float(cls.defaults.get("weight", 1.0)))} if "weight" in cls.defaults else {}
        check_space(cls.name, cls.defaults, cls.search_space)
        return dict(cls.search_space)

    @classmethod
    def code_version(cls) -> str:
        """A hash of the definitions this strategy's loss can reach (`_code.py`): a change to its
        maths makes stored results stale; an edited comment or a helper added for another strategy
        does not."""
        return code_version(class_roots(cls, DistillationStrategy))

    @classmethod
    def ensemble_teachers(cls, hparams: dict[str, Any]) -> tuple[str, ...]:
        """The backbone specs (`LightGCN:64`) of the teachers besides the pairing's that resolved
        `hparams` name, for a strategy that `needs_trajectories`; none otherwise."""
        return ()

    @classmethod
    def knowledge_bytes(cls, hparams: dict[str, Any], n_users: int, n_items: int, teacher_dim: int) -> int:
        """At least how many bytes `prepare` keeps, so an impossible size is refused before anything
        trains: a per-user item list (int64 id and float32 score per entry) for each hyperparameter
        declared as a share of the catalogue (top-N pools), and a copy of the teacher's
        representation tables for strategies that need them. Override for other knowledge."""
        total = 0
        for key, distribution in (cls.search_space or {}).items():
            if isinstance(distribution, CatalogueShare) and key in hparams:
                total += n_users * min(int(hparams[key]), n_items) * (8 + 4)
        if cls.needs_representations:
            total += (n_users + n_items) * teacher_dim * 4
        return total

    @property
    def weight(self) -> float:
        return float(self.hparams["weight"])

    def prepare(self) -> None:
        """Compute the teacher's knowledge once per run (top-N lists, representation tables)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Per-epoch hook (resampling)."""

    def holds_early_stopping(self) -> bool:
        """True while the method's own schedule is still running and its model is not yet the one the
        method defines (a curriculum that ends in a final phase, HetComp): the trainer neither stops
        nor counts patience until it turns False. Default: never."""
        return False

    def model_to_train(self, student: nn.Module) -> nn.Module:
        """The model the run trains (unless `trains` is False), validates, tests and measures, called
        after `prepare`: the student, unless the strategy `replaces_student`."""
        return student

    def compress(self, model: nn.Module) -> nn.Module | None:
        """The model to deploy, made from the trained one (quantised after training), or None to
        deploy it as trained. Its deployed size is annotated on it (`backbones.DEPLOYED`)."""
        return None

    def loss(self, batch) -> torch.Tensor | None:
        """The distillation term on a RecBole training batch, or None for no KD."""
        raise NotImplementedError

    # -- helpers shared by strategies -------------------------------------------------------
    def batch_users(self, batch) -> torch.Tensor:
        return batch[self.context.uid_field]

    def batch_items(self, batch) -> torch.Tensor:
        """Positive and (if the loader samples them) negative items of the batch."""
        items = [batch[self.context.iid_field]]
        if self.context.neg_iid_field in batch.interaction:
            items.append(batch[self.context.neg_iid_field])
        return torch.cat(items)


def _cast(strategy: str, key: str, raw: Any, default: Any) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            word = str(raw).strip().lower()
            if not isinstance(raw, bool) and word not in TRUE_WORDS | FALSE_WORDS:
                raise ValueError
            value = raw if isinstance(raw, bool) else word in TRUE_WORDS
        elif kind is int:
            value = int(float(raw)) if float(raw).is_integer() else None
            if value is None:
                raise ValueError
        else:
            value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise KdbenchError(
            f"hyperparameter '{key}' of strategy '{strategy}' must be {kind.__name__}, got '{raw}'"
        ) from None
    if kind is int and value > INT64_MAX:  # torch's widest integer
        raise KdbenchError(f"hyperparameter '{key}' of strategy '{strategy}' must be at most {INT64_MAX}, got '{raw}'")
    if kind is not bool and (not math.isfinite(value) or value < 0):
        raise KdbenchError(f"hyperparameter '{key}' of strategy '{strategy}' must be >= 0, got '{raw}'")
    return value

