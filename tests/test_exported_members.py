"""The public surface is honest: every module's ``__all__`` names things that exist."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import callbridge

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(callbridge.__path__, "callbridge.")
    if ".migrations" not in m.name and not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists_and_is_listed_once(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ promises {missing}"
