from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ambient_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugin allow/block lists from the developer's shell must not leak into tests."""
    monkeypatch.delenv("DOPPELKIT_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("DOPPELKIT_BLOCK_PLUGINS", raising=False)
