"""Composite strategies: registered strategies combined without new code, named `a+b` (e.g. `de+rrd`,
the DE-RRD paper's actual method, Kang et al., CIKM 2020).

    L = L_base + sum_p weight_p * L_p(batch)

Each part keeps its own hyperparameters, namespaced by its name (`de.weight`, `rrd.K`; override
with `--hp rrd.K=20` or a suite's `hparams: {de+rrd: {de.num_experts: 5}}`), its own knowledge
(`prepare`), resampling (`on_epoch_start`) and training-only modules. The composite's own `weight`
stays 1: each part's weight scales its term. Asking the registry for an unregistered name with a
`+` builds and registers the composite, so `run --strategy de+rrd` and suites need nothing else.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdbench.errors import KdbenchError
from kdbench.strategies._code import class_roots, code_version
from kdbench.strategies.base import ANY_BACKBONE, STRATEGIES, DistillationStrategy

SEPARATOR = "+"


def part_hparams(parts: list[str], hparams: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{'de.weight': 0.1, 'rrd.K': 20} -> {'de': {'weight': 0.1}, 'rrd': {'K': 20}}."""
    split: dict[str, dict[str, Any]] = {part: {} for part in parts}
    for key, value in hparams.items():
        part, _, name = key.partition(".")
        if part in split and name:
            split[part][name] = value
    return split


class CompositeStrategy(DistillationStrategy):
    """Base of the classes `make_composite` builds; `parts` holds the part classes in order."""

    parts: tuple[type[DistillationStrategy], ...] = ()

    def __init__(self, context, **hparams):
        super().__init__(context, **hparams)
        names = [part.name for part in self.parts]
        given = part_hparams(names, self.hparams)
        self.members = nn.ModuleList(part(context, **given[part.name]) for part in self.parts)

    @classmethod
    def code_version(cls) -> str:
        roots = [(__name__, "CompositeStrategy"), (__name__, "part_hparams")]
        for part in cls.parts:
            roots += class_roots(part, DistillationStrategy)
        return code_version(roots)

    @classmethod
    def tuning_space(cls):
        return {f"{part.name}.{key}": dist for part in cls.parts for key, dist in part.tuning_space().items()}

    def prepare(self) -> None:
        for member in self.members:
            member.prepare()

    def on_epoch_start(self, epoch: int) -> None:
        for member in self.members:
            member.on_epoch_start(epoch)

    def loss(self, batch) -> torch.Tensor | None:
        total = None
        for member in self.members:
            term = member.loss(batch)
            if term is not None:
                total = member.weight * term if total is None else total + member.weight * term
        return total


def make_composite(name: str) -> type[DistillationStrategy]:
    """The composite class for `name` (`a+b+...`), each part a registered strategy."""
    names = name.split(SEPARATOR)
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        raise KdbenchError(f"composite strategy '{name}' must join two or more different strategies with '+'")
    parts = tuple(STRATEGIES.get(part) for part in names)  # an unknown part names the valid ones
    for part in parts:
        if issubclass(part, CompositeStrategy):
            raise KdbenchError(f"composite strategy '{name}': part '{part.name}' is itself a composite")
        if part.replaces_student:
            raise KdbenchError(f"composite strategy '{name}': part '{part.name}' deploys a compressed teacher "
                               "instead of the student, so it joins no composite")
    defaults: dict[str, Any] = {"weight": 1.0}
    for part in parts:
        defaults |= {f"{part.name}.{key}": value for key, value in part.defaults.items()}
    families = []
    for part in parts:
        if part.family not in families:
            families.append(part.family)
    attributes = {
        "name": name, "family": SEPARATOR.join(families),
        "paper": "composite of " + "; ".join(f"{p.name} ({p.paper})" for p in parts),
        "parts": parts, "defaults": defaults,
        "must_be_positive": tuple(f"{p.name}.{key}" for p in parts for key in p.must_be_positive),
        "backbones": shared_backbones(parts),
        "needs_representations": any(p.needs_representations for p in parts),
        "needs_teacher": any(p.needs_teacher for p in parts),
        "updates_teacher": any(p.updates_teacher for p in parts),
        "after_training": all(p.after_training for p in parts),
        "search_space": None,  # tuning_space() joins the parts' spaces
        "__doc__": f"{name}: L = L_base + " + " + ".join(f"{p.name}.weight * L_{p.name}" for p in parts),
    }
    return type(f"Composite_{'_'.join(n.replace('-', '_') for n in names)}", (CompositeStrategy,), attributes)


def shared_backbones(parts: tuple[type[DistillationStrategy], ...]) -> tuple[str, ...]:
    """The backbone families every part runs on (a part declaring all of them constrains nothing)."""
    declared = [part.backbones for part in parts if ANY_BACKBONE not in part.backbones]
    if not declared:
        return (ANY_BACKBONE,)
    return tuple(f for f in declared[0] if all(f in other for other in declared[1:]))


def _composite_factory(name: str) -> type[DistillationStrategy] | None:
    return make_composite(name) if SEPARATOR in name else None


STRATEGIES.factory = _composite_factory
