"""pytest fixtures for doppelkit plugin tests (registered via the ``pytest11`` entry point)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

from doppelkit.home import Home
from doppelkit.interfaces import RunContext
from doppelkit.plugins import build_registries, get_plugin_manager
from doppelkit.registry import Registries
from doppelkit.testing.helpers import make_context


@pytest.fixture
def doppelkit_pm() -> pluggy.PluginManager:
    """A hermetic plugin manager: built-ins only, no entry points."""
    return get_plugin_manager(load_entrypoints=False)


@pytest.fixture
def register_plugin(doppelkit_pm: pluggy.PluginManager) -> Iterator[Callable[[Any], Registries]]:
    """Register a throwaway plugin (module, class or object with ``@hookimpl`` functions) for
    the duration of one test; returns the rebuilt registries."""
    added: list[Any] = []

    def register(plugin: Any, name: str | None = None) -> Registries:
        doppelkit_pm.register(plugin, name=name)
        added.append(plugin)
        return build_registries(doppelkit_pm)

    yield register
    for plugin in added:
        doppelkit_pm.unregister(plugin)


@pytest.fixture
def doppelkit_home(tmp_path: Path) -> Home:
    """An empty home directory for one test."""
    return Home.at(tmp_path / "home")


@pytest.fixture
def run_context(doppelkit_home: Home, doppelkit_pm: pluggy.PluginManager) -> RunContext:
    """A RunContext over ``doppelkit_home`` with the hermetic plugin manager's hooks and
    registries (built-ins plus anything ``register_plugin`` added before it was built)."""
    return make_context(
        doppelkit_home.root, hook=doppelkit_pm.hook, registries=build_registries(doppelkit_pm)
    )
