"""The SDK's shape: modules in layers with no import cycle, no reaching into another module's
private members, no module too long, and every state machine's table complete.

The import and private-access checks read the source with :mod:`ast`, so imports made only
for type checkers (``if TYPE_CHECKING:``) count like any other.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

import pytest

import callbridge.client
from callbridge.statemachine import StateMachine, check_table

PACKAGE = "callbridge.client"
ROOT = Path(callbridge.client.__file__).parent
MODULES: dict[str, Path] = {
    f"{PACKAGE}.{info.name}": ROOT / f"{info.name}.py"
    for info in pkgutil.iter_modules([str(ROOT)])
    if not info.ispkg
}
MAX_LINES = 600


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported_modules(module: str, tree: ast.Module) -> Iterator[str]:
    """Every module ``module`` imports, anywhere in its source (TYPE_CHECKING blocks and
    function bodies included); ``from pkg import sub`` counts as importing ``pkg.sub`` when
    that is a module."""
    package = module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            yield from submodules
            if len(submodules) < len(node.names):
                yield base


def _client_imports() -> dict[str, set[str]]:
    """module -> the client modules it imports (the package itself counts as one)."""
    inside = set(MODULES) | {PACKAGE}
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        if module == f"{PACKAGE}.__init__":
            continue
        imported = set(_imported_modules(module, _tree(path)))
        graph[module] = {m for m in imported if m in inside and m != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one
    module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_client_modules_import_each_other_without_a_cycle() -> None:
    graph = _client_imports()
    assert len(graph) >= 20  # the parse found the modules
    assert _cycles(graph) == []


def test_no_client_module_imports_the_package_itself() -> None:
    # ``from callbridge.client import Phone`` inside the package would run __init__, which
    # imports every module: a cycle through the package.
    importers = sorted(m for m, deps in _client_imports().items() if PACKAGE in deps)
    assert importers == []


def test_the_cycle_finder_finds_a_cycle_through_a_type_checking_import() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from callbridge.client.b import B\n"
    )
    a = set(_imported_modules(f"{PACKAGE}.a", ast.parse(source)))
    graph = {f"{PACKAGE}.a": a, f"{PACKAGE}.b": {f"{PACKAGE}.a"}}
    assert _cycles(graph) == [[f"{PACKAGE}.a", f"{PACKAGE}.b"]]


def test_the_client_does_not_import_the_servers_media_plane() -> None:
    offenders = sorted(
        module
        for module, path in MODULES.items()
        for imported in _imported_modules(module, _tree(path))
        if imported == "callbridge.media" or imported.startswith("callbridge.media.")
    )
    assert offenders == []


def _private_names_defined(tree: ast.Module) -> set[str]:
    """The ``_names`` a module defines on its classes and objects: methods, class attributes
    and ``self._name = ...`` assignments."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign | ast.Assign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _foreign_private_accesses(
    module: str, tree: ast.Module, others: dict[str, set[str]]
) -> list[str]:
    """``x._name`` in ``module`` where ``x`` is not ``self``/``cls`` and ``_name`` is a private
    member some *other* client module defines. Without types the check cannot tell whose
    object ``x`` is, so a name this module defines too is also flagged unless ``x`` is
    ``self.something`` (the private of a third-party object the module holds, e.g. aiortc's)."""
    mine = _private_names_defined(tree)
    theirs = {name for other, names in others.items() if other != module for name in names}
    hits: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        foreign = name in theirs and name not in mine
        if foreign or (name in mine and not _is_self_chain(node.value)):
            hits.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    return hits


def _is_self_chain(node: ast.expr) -> bool:
    """``self.x.y``: a private of an object this module's class holds (aiortc's own, say)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def test_no_client_module_reaches_into_another_modules_private_members() -> None:
    trees = {module: _tree(path) for module, path in MODULES.items()}
    defined = {module: _private_names_defined(tree) for module, tree in trees.items()}
    hits = [
        hit
        for module, tree in trees.items()
        for hit in _foreign_private_accesses(module, tree, defined)
    ]
    assert hits == []


def test_the_private_access_check_sees_a_reach_into_another_module() -> None:
    others = {f"{PACKAGE}.call": {"_make_event"}, f"{PACKAGE}.phone": set()}
    tree = ast.parse("def f(call):\n    return call._make_event('x', {})\n")
    hits = _foreign_private_accesses(f"{PACKAGE}.phone", tree, others)
    assert hits == [f"{PACKAGE}.phone:2: call._make_event"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_client_module_is_over_600_lines(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines"


def _state_machines() -> dict[str, type[StateMachine[Enum]]]:
    machines: dict[str, type[StateMachine[Enum]]] = {}
    for module in MODULES:
        for name, value in vars(importlib.import_module(module)).items():
            if (
                inspect.isclass(value)
                and issubclass(value, StateMachine)
                and value.__module__ == module
                and "TRANSITIONS" in vars(value)
            ):
                machines[name] = value
    return machines


def test_every_stateful_client_object_is_on_the_kit() -> None:
    machines = _state_machines()
    assert set(machines) == {"CallBase", "CallGroup", "Conference", "PhoneSession", "Transport"}
    assert issubclass(callbridge.client.Phone, machines["PhoneSession"])
    assert issubclass(callbridge.client.Call, machines["CallBase"])


@pytest.mark.parametrize("name", sorted(_state_machines()))
def test_each_client_state_machines_table_is_complete(name: str) -> None:
    machine = _state_machines()[name]
    table = machine.TRANSITIONS
    states = {type(state) for state in table}
    assert len(states) == 1, f"{name}: rows of several enums {states}"
    check_table(states.pop(), table)
