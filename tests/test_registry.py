from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import BaseModel

from doppelkit import hookimpl
from doppelkit.errors import PluginConflictError, UnknownComponentError
from doppelkit.plugins import build_registries
from doppelkit.registry import Registry


class EchoBackend:
    name: ClassVar[str] = "echo"

    class Config(BaseModel):
        pass

    def __init__(self, config: Config, context: object) -> None:
        pass

    def run(self, step, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        return step(*args, **kwargs)


class EchoPlugin:
    @hookimpl
    def register_backends(self, register):  # type: ignore[no-untyped-def]
        register(EchoBackend)


class EchoAgain(EchoPlugin):
    pass


def test_duplicate_names_name_both_plugins(doppelkit_pm, register_plugin) -> None:
    register_plugin(EchoPlugin(), name="first-echo")
    doppelkit_pm.register(EchoAgain(), name="second-echo")
    with pytest.raises(PluginConflictError) as info:
        build_registries(doppelkit_pm)
    assert "first-echo" in str(info.value) and "second-echo" in str(info.value)
    assert "'echo'" in str(info.value)


def test_unknown_name_lists_what_is_available(register_plugin) -> None:
    registries = register_plugin(EchoPlugin(), name="echo-plugin")
    with pytest.raises(UnknownComponentError) as info:
        registries.backend.get("nope")
    assert "Available backends: cuda, echo, local" in str(info.value)


def test_unknown_first_party_name_says_which_extra() -> None:
    with pytest.raises(UnknownComponentError, match=r'pip install "doppelkit\[modal\]"'):
        Registry("backend").get("modal")


def test_malformed_component_is_rejected_with_reasons() -> None:
    class NoConfig:
        name = "broken"

    with pytest.raises(TypeError, match="pydantic `Config`.*methods run"):
        Registry("backend").add(NoConfig, plugin="bad-plugin")


def test_registered_plugin_is_removed_after_the_test(doppelkit_pm) -> None:
    assert "echo" not in build_registries(doppelkit_pm).backend
