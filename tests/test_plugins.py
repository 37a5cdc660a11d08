from __future__ import annotations

import importlib.metadata

import pytest

from doppelkit.plugins import build_registries, get_plugin_manager, plugin_infos


def _loaded(pm) -> set[str]:  # type: ignore[no-untyped-def]
    return {name for name, plugin in pm.list_name_plugin() if plugin is not None}


def _entry_point_names() -> set[str]:
    return {ep.name for ep in importlib.metadata.entry_points(group="doppelkit")}


def test_builtins_register_through_the_same_hooks() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    registries = build_registries(pm)
    assert {"local", "cuda"} <= set(registries.backend.names())
    assert not _entry_point_names() & _loaded(pm)


def test_entry_points_are_loaded() -> None:
    pm = get_plugin_manager()
    loaded = _loaded(pm)
    assert {"slack", "lora", "jsonl"} <= loaded


def test_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOPPELKIT_LOAD_PLUGINS", "jsonl")
    loaded = _loaded(get_plugin_manager())
    assert "jsonl" in loaded and "slack" not in loaded and "lora" not in loaded


def test_empty_allow_list_loads_no_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOPPELKIT_LOAD_PLUGINS", "")
    loaded = _loaded(get_plugin_manager())
    assert not loaded & _entry_point_names()


def test_block_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOPPELKIT_BLOCK_PLUGINS", "jsonl, slack")
    registries = build_registries(get_plugin_manager())
    assert "jsonl" not in registries.source and "slack_export" not in registries.source


def test_plugin_infos_name_distribution_and_components() -> None:
    pm = get_plugin_manager()
    infos = {i.name: i for i in plugin_infos(pm, build_registries(pm))}
    assert infos["jsonl"].distribution == "doppelkit-jsonl"
    assert infos["jsonl"].version == importlib.metadata.version("doppelkit-jsonl")
    assert infos["jsonl"].registers == {"source": ["jsonl"]}
    assert infos["doppelkit.builtins.backends"].distribution == "doppelkit"
