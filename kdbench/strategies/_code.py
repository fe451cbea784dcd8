"""A strategy's code version: a hash of exactly the definitions its loss can reach.

Starting from the strategy's class (and its strategy base classes), every module-level name the
code refers to is followed, within its module and through `from kdbench.strategies.X import ...`
into the strategy helper modules, and each reached definition's syntax tree is hashed. Docstrings,
comments, decorators (registration metadata) and `search_space` (what the tuner may try) are left
out. So a change to the maths of a strategy or of a helper it calls makes its stored results
stale, while a new helper added beside it for another strategy does not. The interface module
(`base.py`) is not followed: it defines the hooks, not a method's maths.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
from functools import lru_cache

if sys.version_info >= (3, 12):
    # Python 3.12 and 3.13 changed what `ast.dump` writes, so every code version (and every stored
    # run's identity) would change with the interpreter: `ast` is then the module with 3.11's dump.
    # This `if` is not hashed (only top-level definitions are), and no definition below changed:
    # a composite strategy hashes `code_version` itself, so editing them would change its version.
    from kdbench.compat import ast_as_311 as ast

PACKAGE = "kdbench.strategies"
INTERFACE = "kdbench.strategies.base"
IGNORED_CLASS_ATTRIBUTES = ("search_space",)


@lru_cache(maxsize=None)
def _module_index(module: str) -> tuple[dict[str, ast.AST], dict[str, tuple[str, str]]]:
    """(top-level definitions by name, names imported from other strategy modules -> (module, name))."""
    tree = ast.parse(inspect.getsource(sys.modules[module]))
    definitions: dict[str, ast.AST] = {}
    imports: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            definitions[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        definitions[name.id] = node
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            if node.module != INTERFACE:
                for alias in node.names:
                    imports[alias.asname or alias.name] = (node.module, alias.name)
    return definitions, imports


@lru_cache(maxsize=None)  # by the node: `_module_index` keeps one per definition, shared by every strategy
def _normalised(node: ast.AST) -> str:
    """The definition's syntax tree without docstrings, decorators or ignored class attributes."""
    node = ast.parse(ast.unparse(node)).body[0]  # a private copy
    for inner in ast.walk(node):
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner.decorator_list = []
        if isinstance(inner, ast.ClassDef):
            inner.body = [n for n in inner.body if not _assigns_any(n, IGNORED_CLASS_ATTRIBUTES)] or [ast.Pass()]
        body = getattr(inner, "body", None)
        if (isinstance(inner, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)):
            inner.body = body[1:] or [ast.Pass()]
    return ast.dump(node)


def _assigns_any(node: ast.AST, names: tuple[str, ...]) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return any(isinstance(t, ast.Name) and t.id in names for t in targets)


def reachable_definitions(roots: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(module, name) -> normalised syntax tree, for every definition reachable from `roots`."""
    found: dict[tuple[str, str], str] = {}
    pending = list(roots)
    while pending:
        module, name = pending.pop()
        if (module, name) in found or module == INTERFACE:
            continue
        definitions, imports = _module_index(module)
        if name in imports:
            pending.append(imports[name])
            continue
        node = definitions.get(name)
        if node is None:
            continue  # a builtin, or a name from outside the strategy modules
        found[(module, name)] = _normalised(node)
        for inner in ast.walk(node):
            if isinstance(inner, ast.Name) and inner.id != name:
                if inner.id in definitions:
                    pending.append((module, inner.id))
                elif inner.id in imports:
                    pending.append(imports[inner.id])
    return found


def class_roots(cls: type, stop: type) -> list[tuple[str, str]]:
    """(module, class name) of `cls` and of its base classes below `stop` (the interface); a plugin's
    classes count too, wherever their module lives."""
    return [(klass.__module__, klass.__qualname__) for klass in cls.__mro__
            if issubclass(klass, stop) and klass is not stop]


def code_version(roots: list[tuple[str, str]]) -> str:
    """sha256 (12 hex digits) of the definitions reachable from `roots`."""
    digest = hashlib.sha256()
    for key, tree in sorted(reachable_definitions(roots).items()):
        digest.update(f"{key[0]}:{key[1]}\0{tree}\0".encode())
    return digest.hexdigest()[:12]
