"""Engines find an adapter's base through the plugin that built it (the ``locate_base`` hook),
never by knowing another plugin's files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from doppelkit import hookimpl
from doppelkit.artifacts import base_location
from doppelkit.errors import UserError
from doppelkit.home import Home
from doppelkit.models import AdapterManifest


def manifest(base_model: str, revision: str | None) -> AdapterManifest:
    return AdapterManifest(
        version="v1", team="T1", persona_id="U1", persona_name="maya", base_model=base_model,
        model_revision=revision, trainer="mine", formatter="chat", template_hash="t",
        dataset_hash="d", doppelkit_version="0",
    )  # fmt: skip


class BaseBuilder:
    """A third-party trainer that builds its own bases under home/cache/builder."""

    @hookimpl
    def locate_base(self, base_model: str, model_revision: str | None, home: Home) -> Any:
        if base_model != "built-here":
            return None
        folder = home.cache / "builder" / str(model_revision)
        if not folder.is_dir():
            raise UserError(f"the base {folder} is gone; retrain to rebuild it")
        return str(folder), None


@pytest.fixture
def hook(doppelkit_pm: Any, register_plugin: Callable[..., Any]) -> Any:
    register_plugin(BaseBuilder(), name="builder")
    return doppelkit_pm.hook


def test_the_plugin_that_built_a_base_says_where_it_is(hook: Any, doppelkit_home: Home) -> None:
    folder = doppelkit_home.cache / "builder" / "k1"
    folder.mkdir(parents=True)
    assert base_location(hook, doppelkit_home, manifest("built-here", "k1")) == (str(folder), None)


def test_a_base_nobody_built_is_the_manifests_hub_id(hook: Any, doppelkit_home: Home) -> None:
    assert base_location(hook, doppelkit_home, manifest("org/model", "abc")) == ("org/model", "abc")


def test_a_base_that_is_gone_is_a_clear_error(hook: Any, doppelkit_home: Home) -> None:
    with pytest.raises(UserError, match="retrain"):
        base_location(hook, doppelkit_home, manifest("built-here", "k2"))


def test_without_a_hook_the_installed_plugins_answer(tmp_path: Path) -> None:
    assert base_location(None, Home.at(tmp_path), manifest("org/model", None)) == ("org/model", None)
