"""One registry type: names -> registered objects, filled by a decorator, with third-party plugins.

Every extension point uses it: strategies (`strategies.STRATEGIES`), backbone families and their
evaluation protocols (`families.FAMILIES`, `families.PROTOCOLS`), the per-model records
(`backbones.MODELS`) and executors (`executors.EXECUTORS`).

Third parties add strategies without editing kdbench, either through the `kdbench.strategies`
entry-point group of their own package, or with `--plugin path/to/file.py` on the command line
(the file registers its classes with `@register_strategy` when it is imported).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

from kdbench.errors import KdbenchError, choices

T = TypeVar("T")

ENTRY_POINT_GROUP = "kdbench.strategies"


class Registry(Generic[T]):
    """Maps names to registered objects; unknown names fail with the list of valid ones."""

    def __init__(self, kind: str, factory: Callable[[str], T | None] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        # Builds an object for a name that was never registered (e.g. the strategy composite `de+rrd`);
        # what it builds is kept apart, so `names()` lists the registered objects only.
        self.factory = factory
        self._built: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise KdbenchError(f"{self.kind} '{name}' is already registered by {self._items[name]}")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if name in self._built:
            return self._built[name]
        built = self.factory(name) if self.factory is not None else None
        if built is None:
            raise KdbenchError(f"unknown {self.kind} '{name}': valid: {choices(self._items)}")
        self._built[name] = built
        return built

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def names(self) -> list[str]:
        return list(self._items)

    def values(self) -> list[T]:
        """The registered objects, in registration order."""
        return list(self._items.values())

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def load_entry_point_plugins(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Import every module advertised under `group`; importing registers its strategies."""
    loaded = []
    for entry in entry_points(group=group):
        try:
            entry.load()
        except (KdbenchError, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - one line naming the plugin, not a traceback
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise KdbenchError(f"plugin '{entry.name}' ({entry.value}) failed to import: "
                               f"{type(exc).__name__}: {detail}") from None
        loaded.append(entry.name)
    return loaded


def load_plugin_file(path: str | Path) -> None:
    """Import a Python file by path so that its `@register_strategy` classes register."""
    from kdbench.store.paths import check_file

    path = check_file(path, "plugin file")
    # one module per file (not per file name: two plugins may both be called strategies.py)
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"kdbench_plugin_{path.stem}_{digest}"
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except KdbenchError:
        del sys.modules[module_name]
        raise
    except KeyboardInterrupt:
        del sys.modules[module_name]
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit (exit() on import), a BaseException subclass
        del sys.modules[module_name]
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise KdbenchError(f"plugin file '{path}' failed to import: {type(exc).__name__}: {detail}") from None
