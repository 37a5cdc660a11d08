"""Config composition (Hydra) and validation (pydantic).

Hydra composes ``configs/doppelkit.yaml`` with the user's overrides; then :func:`validate`
checks every section against its pydantic model and reports *all* problems in one
:class:`~doppelkit.errors.ConfigError`. Components look each other up by ``name`` in the
registries; YAML never imports code (no ``_target_``).

Every registered component gets a ConfigStore node ``<kind>/base_<name>`` built from its
pydantic defaults. Shipped YAML presets extend it through their defaults list; a third-party
component without YAML also gets ``<kind>/<name>`` so ``source=<name>`` just works.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from doppelkit.errors import ConfigError, UnknownComponentError
from doppelkit.interfaces import KINDS
from doppelkit.registry import FIRST_PARTY_EXTRAS, Registries
from doppelkit.settings import Settings

PRIMARY_CONFIG = "doppelkit"
DEFAULT_BACKEND = "local"
MISSING = "???"


def config_dir() -> Path:
    """The directory of shipped configs: inside the package when installed from a wheel,
    ``configs/`` at the repository root in a source checkout (editable install)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "configs", package.parent / "configs"):
        if (candidate / f"{PRIMARY_CONFIG}.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"doppelkit's configs/ directory was not found next to {package}")


def component_defaults(config_cls: type[BaseModel]) -> dict[str, Any]:
    """A component Config's defaults as plain data; required fields become ``???``."""
    from pydantic_core import to_jsonable_python

    return {
        field_name: MISSING
        if info.is_required()
        else to_jsonable_python(info.get_default(call_default_factory=True))
        for field_name, info in config_cls.model_fields.items()
    }


def register_config_schemas(registries: Registries) -> None:
    """Store each registered component's defaults in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    shipped = config_dir()
    for registry in registries:
        for reg in registry:
            node = {"name": reg.name, **component_defaults(reg.component.Config)}
            store.store(group=registry.kind, name=f"base_{reg.name}", node=node, provider="doppelkit")
            if not (shipped / registry.kind / f"{reg.name}.yaml").exists():
                store.store(group=registry.kind, name=reg.name, node=node, provider=reg.plugin)
    # First-party components whose extra is not installed still compose (so `--cfg job` and
    # `--help` work on a core-only install); validation then names the extra to install.
    for kind, name in FIRST_PARTY_EXTRAS:
        if name not in registries.of(kind):
            store.store(group=kind, name=f"base_{name}", node={"name": name}, provider="doppelkit")


def compose(overrides: list[str] | tuple[str, ...] = (), registries: Registries | None = None) -> Any:
    """Compose the run config with Hydra's Compose API (tests, ``validate``, library use)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if registries is None:
        from doppelkit.plugins import build_registries, default_plugin_manager

        registries = build_registries(default_plugin_manager())
    register_config_schemas(registries)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name=PRIMARY_CONFIG, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError([str(exc).strip()], title="Could not compose the configuration") from None


@dataclass(frozen=True)
class Selection:
    """A validated component choice: which class, with which validated config."""

    kind: str
    name: str
    component: type[Any]
    config: BaseModel
    plugin: str


@dataclass(frozen=True)
class RunConfig:
    settings: Settings
    selections: dict[str, Selection]

    def __getitem__(self, kind: str) -> Selection:
        return self.selections[kind]


def _plain(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, dict):
        return cfg
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(container, dict)
    container.pop("hydra", None)
    return {str(k): v for k, v in container.items()}


def _drop_missing(section: dict[str, Any]) -> dict[str, Any]:
    """Leave out Hydra's ``???`` (at any depth) so pydantic reports "required", not a type."""
    return {k: _drop_missing(v) if isinstance(v, dict) else v for k, v in section.items() if v != MISSING}


def _describe(prefix: str, error: ValidationError) -> list[str]:
    problems = []
    for err in error.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        kind = err["type"]
        if kind == "extra_forbidden":
            problems.append(f"{loc}: unknown key (value {err['input']!r})")
        elif kind == "missing":
            problems.append(f"{loc}: required, but not set")
        else:
            problems.append(f"{loc}: {err['msg']} (got {err['input']!r})")
    return problems


def _unknown_keys(prefix: str, section: dict[str, Any], model: type[BaseModel]) -> list[str]:
    """Friendlier 'unknown key' lines: name the allowed keys and a likely typo."""
    allowed = sorted(model.model_fields)
    problems = []
    for key in sorted(set(section) - set(allowed)):
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        where = f"{prefix}.{key}" if prefix else key
        problems.append(f"{where}: unknown key (value {section[key]!r}); allowed: {', '.join(allowed)}{hint}")
    return problems


def _validate_section(prefix: str, section: dict[str, Any], model: type[BaseModel]) -> tuple[Any, list[str]]:
    problems = _unknown_keys(prefix, section, model)
    known = {k: v for k, v in section.items() if k in model.model_fields}
    try:
        return model.model_validate(_drop_missing(known)), problems
    except ValidationError as exc:
        return None, problems + _describe(prefix, exc)


def validate(cfg: Any, registries: Registries, needs: tuple[str, ...] = KINDS) -> RunConfig:
    """Validate a composed config; raise one ConfigError listing every problem.

    Every section of an installed component is validated. A component that is not installed
    is an error only for the kinds in ``needs`` (the job at hand): ``doppelkit ingest`` works
    without the trainer's extra installed.
    """
    data = _plain(cfg)
    problems: list[str] = []
    selections: dict[str, Selection] = {}

    for kind in KINDS:
        raw = data.pop(kind, None)
        if raw is None and kind == "backend":
            raw = {"name": DEFAULT_BACKEND}
        if not isinstance(raw, dict):
            problems.append(
                f"{kind}: missing; choose one with {kind}=NAME (available: "
                f"{', '.join(registries.of(kind).names()) or 'none installed'})"
            )
            continue
        raw = dict(raw)
        name = raw.pop("name", None)
        if not isinstance(name, str):
            problems.append(f"{kind}.name: missing; the {kind} section must say which {kind} to use")
            continue
        try:
            reg = registries.of(kind).registration(name)
        except UnknownComponentError as exc:
            if kind in needs:
                problems.append(f"{kind}={name}: {exc}")
            continue
        config, section_problems = _validate_section(kind, raw, reg.component.Config)
        problems += section_problems
        if config is not None:
            selections[kind] = Selection(kind, name, reg.component, config, reg.plugin)

    settings, core_problems = _validate_section("", data, Settings)
    problems += core_problems

    if problems or settings is None:
        raise ConfigError(problems)
    return RunConfig(settings=settings, selections=selections)
