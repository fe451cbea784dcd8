"""Backbone families (in the spirit of RecBole's ModelType): importing this package registers every
built-in one, one file each (`general.py`, `sequential.py`); `base.py` holds the interface, the
registries and the dispatch on a model's family, `spec.py` the `MODEL:DIM[:OPTIONS]` spec.

A new family is one new file here: a `Family` subclass with `@register_family` (its models' cards,
protocols, loading and adapters). Strategies that run on it say so in their `register_strategy`.
"""

import importlib
import pkgutil

from kdbench.families.base import (DEFAULT_PROTOCOL, FAMILIES, PROTOCOLS, Family, Protocol, check_pairing,
                                   default_protocol, family_of, family_of_model, get_protocol, known_models,
                                   load_data, register_family)
from kdbench.families.spec import BackboneSpec

_SUPPORT_MODULES = {"base", "spec"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SUPPORT_MODULES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DEFAULT_PROTOCOL", "FAMILIES", "PROTOCOLS", "BackboneSpec", "Family", "Protocol", "check_pairing",
           "default_protocol", "family_of", "family_of_model", "get_protocol", "known_models", "load_data",
           "register_family"]
