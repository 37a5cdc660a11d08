"""Typed registries: one per plugin kind, filled through the ``register_<kind>s`` hooks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from doppelkit.errors import InvalidPluginError, PluginConflictError, UnknownComponentError
from doppelkit.interfaces import KINDS

C = TypeVar("C")

# First-party components that live in optional distributions, so an unknown name can say
# which extra to install instead of just "unknown".
FIRST_PARTY_EXTRAS: dict[tuple[str, str], str] = {
    ("source", "slack_export"): "slack",
    ("source", "slack"): "slack",
    ("frontend", "bolt"): "slack",
    ("trainer", "lora"): "lora",
    ("engine", "peft"): "lora",
    ("engine", "vllm"): "vllm",
    ("backend", "modal"): "modal",
}

REQUIRED_METHODS: dict[str, tuple[str, ...]] = {
    "source": ("workspace", "threads"),
    "formatter": ("examples", "conversation", "render", "render_prompt"),
    "trainer": ("train",),
    "engine": ("current_version", "personas", "stream", "reply", "close"),
    "backend": ("run",),
    "frontend": ("serve",),
}


@dataclass(frozen=True)
class Registration(Generic[C]):
    kind: str
    name: str
    component: type[C]
    plugin: str  # the registering plugin's name (entry point or module)


class Registry(Generic[C]):
    """Name → component class for one kind. Duplicate names fail loudly, naming both plugins."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; kinds are {', '.join(KINDS)}")
        self.kind = kind
        self._items: dict[str, Registration[C]] = {}

    def add(self, component: type[C], plugin: str) -> None:
        name = getattr(component, "name", None)
        config = getattr(component, "Config", None)
        missing = [m for m in REQUIRED_METHODS[self.kind] if not callable(getattr(component, m, None))]
        problems = []
        if not isinstance(name, str) or not name:
            problems.append("a non-empty string `name`")
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            problems.append("a pydantic `Config` class")
        if missing:
            problems.append("methods " + ", ".join(missing))
        if problems:
            raise InvalidPluginError(
                f"{plugin} registered {component!r} as a {self.kind}, but it lacks " + "; ".join(problems)
            )
        assert isinstance(name, str)
        if name in self._items:
            raise PluginConflictError(self.kind, name, self._items[name].plugin, plugin)
        self._items[name] = Registration(self.kind, name, component, plugin)

    def get(self, name: str) -> type[C]:
        return self.registration(name).component

    def registration(self, name: str) -> Registration[C]:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownComponentError(self.kind, name, self._items, unknown_hint(self.kind, name)) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Registration[C]]:
        return iter(sorted(self._items.values(), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._items)


# First-party components announced but not released yet: say so instead of sending users to
# an install that cannot succeed.
UNRELEASED_EXTRAS: frozenset[str] = frozenset()


def unknown_hint(kind: str, name: str) -> str:
    extra = FIRST_PARTY_EXTRAS.get((kind, name))
    if extra in UNRELEASED_EXTRAS:
        return f'{name!r} is not released yet; it will ship as pip install "doppelkit[{extra}]". ' + (
            "Until then leave out +backend to run locally." if kind == "backend" else ""
        )
    if extra:
        return f'{name!r} is provided by an optional extra: pip install "doppelkit[{extra}]"'
    return ""


class Registries:
    """All registries of one plugin manager, by kind: ``registries.source.get("slack")``."""

    def __init__(self) -> None:
        self.source: Registry[Any] = Registry("source")
        self.formatter: Registry[Any] = Registry("formatter")
        self.trainer: Registry[Any] = Registry("trainer")
        self.engine: Registry[Any] = Registry("engine")
        self.backend: Registry[Any] = Registry("backend")
        self.frontend: Registry[Any] = Registry("frontend")

    def of(self, kind: str) -> Registry[Any]:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; kinds are {', '.join(KINDS)}")
        registry: Registry[Any] = getattr(self, kind)
        return registry

    def __iter__(self) -> Iterator[Registry[Any]]:
        return (self.of(k) for k in KINDS)
