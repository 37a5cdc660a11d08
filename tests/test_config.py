"""Composition and validation: every shipped config validates; all problems come together."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from doppelkit import hookimpl
from doppelkit.config import compose, config_dir, validate
from doppelkit.errors import ConfigError
from doppelkit.plugins import build_registries, get_plugin_manager
from doppelkit.registry import FIRST_PARTY_EXTRAS


@pytest.fixture(scope="module")
def registries():  # type: ignore[no-untyped-def]
    return build_registries(get_plugin_manager())


def _options() -> list[tuple[str, str]]:
    root = config_dir()
    return sorted(
        (group.name, yaml.stem) for group in root.iterdir() if group.is_dir() for yaml in group.glob("*.yaml")
    )


@pytest.mark.parametrize(("group", "option"), _options())
def test_every_shipped_config_validates(group: str, option: str, registries, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prefix = "+" if group == "backend" else ""
    overrides = [f"{prefix}{group}={option}", f"home={tmp_path}"]
    cfg = compose(overrides, registries)
    if group != "model" and option not in registries.of(group):
        # A first-party component whose extra is not installed: composes, then names the extra.
        assert (group, option) in FIRST_PARTY_EXTRAS
        with pytest.raises(ConfigError, match=r"doppelkit\[\w+\]"):
            validate(cfg, registries)
        return
    run = validate(cfg, registries)
    if group == "model":
        assert run.settings.model.name
    else:
        assert run[group].name == option


def test_backend_is_not_in_the_defaults_and_means_local(registries, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = compose([f"home={tmp_path}"], registries)
    assert "backend" not in cfg
    assert validate(cfg, registries)["backend"].name == "local"


def test_plus_backend_modal_composes(registries) -> None:  # type: ignore[no-untyped-def]
    cfg = compose(["+backend=modal"], registries)
    assert cfg.backend.name == "modal"


def test_all_problems_are_reported_together(registries, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = compose(
        [
            "+backend=local",
            "backend.device=gpu",
            "engine.top_p=5",
            "engine.max_new_tokens=lots",
            f"home={tmp_path}",
        ],
        registries,
    )
    with pytest.raises(ConfigError) as info:
        validate(cfg, registries)
    message = str(info.value)
    assert len(info.value.problems) == 3
    assert "backend.device" in message and "'gpu'" in message and "'auto', 'cpu' or 'cuda'" in message
    assert "engine.top_p" in message and "engine.max_new_tokens" in message


def test_unknown_override_key_is_a_config_error(registries) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="persona.usr"):
        compose(["persona.usr=maya"], registries)


class NeedsPath:
    name: ClassVar[str] = "needs_path"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: Path
        limit: int = 3

    def __init__(self, config: Config, context: object) -> None:
        self.config = config

    def workspace(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def threads(self, report):  # type: ignore[no-untyped-def]
        raise NotImplementedError


class NeedsPathPlugin:
    @hookimpl
    def register_sources(self, register):  # type: ignore[no-untyped-def]
        register(NeedsPath)


def test_third_party_group_from_pydantic_defaults(register_plugin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registries = register_plugin(NeedsPathPlugin(), name="needs-path-plugin")
    cfg = compose(["source=needs_path", f"home={tmp_path}"], registries)
    assert cfg.source.limit == 3
    # A hermetic plugin manager: only the source must be installed for this check.
    with pytest.raises(ConfigError, match="source.path: required"):
        validate(cfg, registries, needs=("source",))
    cfg = compose(
        ["source=needs_path", "source.path=/tmp/x", "source.limit=4", f"home={tmp_path}"], registries
    )
    run = validate(cfg, registries, needs=("source",))
    assert run["source"].config.limit == 4
    assert run["source"].config.path == Path("/tmp/x")
