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

import copy
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_core import to_jsonable_python

from doppelkit.errors import ConfigError, UnknownComponentError
from doppelkit.interfaces import KINDS
from doppelkit.models import PersonaSelector
from doppelkit.registry import FIRST_PARTY_EXTRAS, Registries, unknown_hint
from doppelkit.settings import Settings, moved_key

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
    check_overrides(overrides, registries)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name=PRIMARY_CONFIG, overrides=with_plugin_presets(overrides))
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

    def to_data(self) -> dict[str, Any]:
        """The run as plain data (JSON types; secrets in the clear): what a step receives.

        ``validate(run.to_data(), registries)`` gives this run back, in any process that has
        the same plugins installed.
        """
        data = plain_data(self.settings)
        for kind, selection in self.selections.items():
            data[kind] = {"name": selection.name, **plain_data(selection.config)}
        return data

    def with_persona(self, team: str, user: str) -> RunConfig:
        """This run, for the persona with these IDs (``persona.user``/``team`` replaced)."""
        persona = PersonaSelector(user=user, team=team)
        return replace(self, settings=self.settings.model_copy(update={"persona": persona}))


def plain_data(model: BaseModel) -> dict[str, Any]:
    """A validated model's values as JSON types: paths as strings, secrets revealed."""

    def plain(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return {name: plain(getattr(value, name)) for name in type(value).model_fields}
        if isinstance(value, (SecretStr, SecretBytes)):
            return plain(value.get_secret_value())
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [plain(v) for v in value]
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        return to_jsonable_python(value)

    result = plain(model)
    assert isinstance(result, dict)
    return result


def _plain(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)  # validate takes sections out of it: never the caller's
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
            problems.append(moved_problem(loc) or f"{loc}: unknown key (value {err['input']!r})")
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
        where = f"{prefix}.{key}" if prefix else key
        moved = moved_problem(where)
        if moved:
            problems.append(moved)
            continue
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        problems.append(f"{where}: unknown key (value {section[key]!r}); allowed: {', '.join(allowed)}{hint}")
    return problems


def moved_problem(key: str) -> str | None:
    """The one line telling a user that ``key`` moved, or None if it did not."""
    new = moved_key(key)
    if new is None:
        return None
    return f"{key} moved to {new}: set {new}=… instead (see docs/migration.md)"


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
            if kind not in needs:
                continue
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


# --- checking overrides before Hydra composes them ------------------------------------------

GROUPS: tuple[str, ...] = (*KINDS, "model")  # config groups a user picks an option of


def default_options() -> dict[str, str]:
    """Each group's option in ``doppelkit.yaml``'s defaults list (no backend: ``local``)."""
    from omegaconf import OmegaConf

    primary = OmegaConf.to_container(OmegaConf.load(config_dir() / f"{PRIMARY_CONFIG}.yaml"))
    chosen = {"backend": DEFAULT_BACKEND}
    entries = primary.get("defaults", []) if isinstance(primary, dict) else []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for group, option in entry.items():
            if str(group) in GROUPS and isinstance(option, str):
                chosen[str(group)] = option
    return chosen


def preset_dirs() -> list[Path]:
    """Where presets live: the shipped configs, then each plugin's preset package."""
    from importlib.resources import files

    dirs = [config_dir()]
    for package in plugin_presets():
        try:
            dirs.append(Path(str(files(package))))
        except (ModuleNotFoundError, TypeError):
            continue  # a broken entry point: its presets are simply not offered
    return dirs


def plugin_presets() -> list[str]:
    from doppelkit.plugins import preset_packages

    return preset_packages()


def with_plugin_presets(overrides: Sequence[str]) -> list[str]:
    """``overrides`` plus Hydra's search path for the plugins' preset packages, merged with a
    ``hydra.searchpath=[…]`` the user gave, so ``source=<plugin preset>`` composes."""
    packages = [f"pkg://{package}" for package in plugin_presets()]
    if not packages:
        return list(overrides)
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out, given = [], []
    for override in overrides:
        parsed = OverridesParser.create().parse_override(override)
        if parsed.key_or_group == "hydra.searchpath":
            value = parsed.value()
            given = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        else:
            out.append(override)
    paths = given + [p for p in packages if p not in given]
    return [*out, f"hydra.searchpath=[{','.join(paths)}]"]


def preset_file(group: str, option: str) -> Path | None:
    for directory in preset_dirs():
        path = directory / group / f"{option}.yaml"
        if path.is_file():
            return path
    return None


def preset_component(group: str, option: str, registries: Registries) -> str | None:
    """The component a ``group=option`` choice selects: the option itself when it is a
    registered name, else what its preset says (``name:``, or ``base_<name>`` in its defaults)."""
    if option in registries.of(group):
        return option
    path = preset_file(group, option)
    if path is None:
        return None
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("name"), str):
        return str(data["name"])
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and entry.startswith("base_"):
            return entry.removeprefix("base_")
    return None


def group_options(group: str, registries: Registries) -> list[str]:
    """What ``group=…`` accepts: presets (shipped and plugins'), installed components, announced
    extras."""
    options = {path.stem for directory in preset_dirs() for path in (directory / group).glob("*.yaml")}
    if group in KINDS:
        options |= set(registries.of(group).names())
        options |= {name for kind, name in FIRST_PARTY_EXTRAS if kind == group}
    return sorted(options)


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (``Model`` or ``Model | None``), else None."""
    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = list(typing.get_args(annotation))
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _unknown_key_problem(key: str, model: type[BaseModel], owner: str, start: int) -> str | None:
    """Walk ``key``'s dotted parts from ``start`` on through ``model``'s fields."""
    parts = key.split(".")
    current: type[BaseModel] | None = model
    for depth, part in enumerate(parts[start:], start=start):
        if current is None:
            return None  # a dict or list field: its own validation says what is wrong
        fields = current.model_fields
        if part not in fields:
            where = ".".join(parts[: depth + 1])
            moved = moved_problem(key) or moved_problem(where)
            if moved:
                return moved
            allowed = sorted(fields)
            close = difflib.get_close_matches(part, allowed, n=1, cutoff=0.6)
            if close:
                suggestion = ".".join([*parts[:depth], close[0]])
                return f"{where}: {owner} has no key {part!r}; did you mean {suggestion}?"
            return f"{where}: {owner} has no key {part!r}; its keys: {', '.join(allowed)}"
        current = _submodel(fields[part].annotation)
    return None


def check_overrides(overrides: Sequence[str], registries: Registries) -> None:
    """Catch the mistakes Hydra would report in a dozen lines, before it composes: an unknown
    group option (``model=nonexistent``), an unknown key (``trainer.rankk=3``, ``foo=bar``) or
    a key that moved — each as one line with "did you mean". Raises :class:`ConfigError`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError([f"cannot parse the overrides: {exc}"], title="Invalid override") from None
    chosen = default_options()
    problems: list[str] = []
    for override in parsed:
        group = override.key_or_group
        if group not in GROUPS or override.package or override.is_delete():
            continue
        values = (
            list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        )
        options = group_options(group, registries)
        for value in values:
            if not isinstance(value, str) or value in options:
                continue
            if group in KINDS:
                hint = unknown_hint(group, value) or _did_you_mean(value, options).lstrip("; ").capitalize()
                problems.append(str(UnknownComponentError(group, value, registries.of(group).names(), hint)))
            else:
                problems.append(
                    f"{group}={value}: no such {group} preset; available: {', '.join(options)}"
                    + _did_you_mean(value, options)
                )
        if len(values) == 1 and isinstance(values[0], str):
            chosen[group] = values[0]
    top_level = sorted({*Settings.model_fields, *GROUPS})
    for override in parsed:
        key = override.key_or_group
        if key in GROUPS or key.startswith("hydra") or override.package or override.is_delete():
            continue
        head = key.split(".", 1)[0]
        if head not in top_level:
            if override.is_add():
                continue  # `+key=value` adds a key on purpose; validation names it if unknown
            unknown = f"{key}: unknown key; top-level keys: {', '.join(top_level)}"
            problems.append(moved_problem(key) or unknown + _did_you_mean(head, top_level))
            continue
        if head in KINDS:
            option = chosen.get(head)
            name = preset_component(head, option, registries) if option else None
            if name is None or name not in registries.of(head):
                continue  # not installed: validation names the extra to install
            problem = _unknown_key_problem(key, registries.of(head).get(name).Config, f"{head}={name}", 1)
        else:
            problem = _unknown_key_problem(key, Settings, "the configuration", 0)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(problems)
