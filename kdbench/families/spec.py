"""`MODEL:DIM[:OPTIONS]`: a backbone as written on the command line and in suites, checked against
the model's family and card.

A model of a family with spec options may carry them after a second colon: `SASRec:64:L2H2` (2
layers, 2 heads), `GRU4Rec:32:L1` (1 GRU layer); without them RecBole's defaults hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kdbench.backbones import ModelCard, model_card
from kdbench.errors import KdbenchError, choices
from kdbench.families.base import Family, family_of, known_models

SPEC_PATTERN = re.compile(r"^(?P<model>[A-Za-z][A-Za-z0-9]*)(?::(?P<dim>\d+))?(?::(?P<options>(?:[A-Za-z]\d+)+))?$")
OPTION_PATTERN = re.compile(r"([A-Za-z])(\d+)")


@dataclass(frozen=True)
class BackboneSpec:
    """A RecBole recommender and its embedding dimension, written `BPR:200`; a model with spec
    options may add them (`SASRec:64:L2H2`: 2 layers, 2 heads), kept in the order written."""

    model: str
    dim: int
    options: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "BackboneSpec":
        match = SPEC_PATTERN.match(text.strip())
        if not match:
            raise KdbenchError(f"malformed backbone '{text}': expected MODEL:DIM, e.g. BPR:200 or LightGCN:64 "
                               f"(sequential: SASRec:64:L2H2, GRU4Rec:32:L1)")
        known = {name.lower(): name for name in known_models()}
        model = known.get(match["model"].lower())
        if model is None:
            raise KdbenchError(f"unknown model '{match['model']}': valid: {choices(known_models())}")
        dim = int(match["dim"] or 64)
        if dim < 1:
            raise KdbenchError(f"backbone '{text}': the dimension must be a positive integer")
        options = tuple((letter.upper(), int(value)) for letter, value in OPTION_PATTERN.findall(match["options"] or ""))
        card = model_card(model)
        for letter, value in options:
            if letter not in card.options:
                valid = choices(f"{k} ({v})" for k, v in card.options.items()) if card.options else "none"
                raise KdbenchError(f"backbone '{text}': unknown option '{letter}' for {model}: valid: {valid}")
            if value < 1:
                raise KdbenchError(f"backbone '{text}': option '{letter}' must be a positive integer")
        if len({letter for letter, _ in options}) != len(options):
            raise KdbenchError(f"backbone '{text}': an option is given twice")
        problem = card.check(dim, dict(options)) if card.check else None
        if problem:
            raise KdbenchError(f"backbone '{text}': {problem}")
        return cls(model, dim, options)

    @property
    def options_text(self) -> str:
        """The options as written after the size: `L2H2` (empty for none)."""
        return "".join(f"{letter}{value}" for letter, value in self.options)

    def __str__(self) -> str:
        return f"{self.model}:{self.dim}" + (f":{self.options_text}" if self.options else "")

    @property
    def card(self) -> ModelCard:
        return model_card(self.model)

    @property
    def family(self) -> Family:
        return family_of(self)

    def size_overrides(self) -> dict[str, Any]:
        """The RecBole config keys of the size and options (part of the teacher cache key)."""
        return self.card.size_overrides(self.dim, self.options)

    def model_settings(self, data_config) -> dict[str, Any]:
        """What `backbones.build_model` sets on the model's RecBole config: its family's settings,
        then its size."""
        return self.family.model_settings(data_config) | self.size_overrides()
