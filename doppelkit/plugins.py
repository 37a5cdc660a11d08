"""Building the plugin manager and the registries from it.

Nothing is loaded at import time: :func:`get_plugin_manager` builds a fresh manager on demand
(and caches the default one). Built-in components register through the very same hooks as
third-party plugins.

Environment knobs (comma-separated plugin names, as shown by ``doppelkit plugins``):

* ``DOPPELKIT_LOAD_PLUGINS`` — when set, load *only* these entry-point plugins (an empty value
  loads none, like ``load_entrypoints=False``);
* ``DOPPELKIT_BLOCK_PLUGINS`` — never load these entry-point plugins.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from doppelkit import hookspecs
from doppelkit.interfaces import KINDS
from doppelkit.registry import Registries
from doppelkit.settings import ScrubConfig

ENTRY_POINT_GROUP = "doppelkit"
PRESETS_ENTRY_POINT_GROUP = "doppelkit.configs"  # plugins' YAML presets, by package
BUILTIN_PLUGINS = (
    "doppelkit.builtins.backends",
    "doppelkit.builtins.chat",
    "doppelkit.builtins.formatters",
    "doppelkit.builtins.home_files",
    "doppelkit.builtins.scrubbers",
)


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def get_plugin_manager(
    *, load_entrypoints: bool = True, plugins: Iterable[Any] = (), builtins: bool = True
) -> pluggy.PluginManager:
    """Build a plugin manager.

    ``load_entrypoints=False`` gives a hermetic manager (tests); ``plugins`` are extra plugin
    objects (modules or instances) registered after the built-ins.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if builtins:
        for modname in BUILTIN_PLUGINS:
            module = importlib.import_module(modname)
            pm.register(module, name=modname)
    if load_entrypoints:
        _load_entrypoints(pm)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def _allowed(name: str) -> bool:
    """Whether the entry-point plugin ``name`` may load (the allow and block lists)."""
    allow = _env_names("DOPPELKIT_LOAD_PLUGINS")
    block = _env_names("DOPPELKIT_BLOCK_PLUGINS") or set()
    return (allow is None or name in allow) and name not in block


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not _allowed(ep.name):
            pm.set_blocked(ep.name)  # pluggy's loader skips blocked names
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)


def preset_packages() -> list[str]:
    """Packages holding plugins' YAML presets (``<group>/<option>.yaml``), from the
    ``doppelkit.configs`` entry-point group; a blocked plugin's presets are not offered."""
    return sorted(
        {
            ep.value
            for ep in importlib.metadata.entry_points(group=PRESETS_ENTRY_POINT_GROUP)
            if _allowed(ep.name)
        }
    )


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    registers: dict[str, list[str]] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)


def build_registries(pm: pluggy.PluginManager) -> Registries:
    """Call every ``register_<kind>s`` implementation, one plugin at a time.

    Calling implementations one by one (not through the hook relay) lets the registry know
    which plugin registered each name, so a duplicate names both plugins.
    """
    registries = Registries()
    for kind in KINDS:
        registry = registries.of(kind)
        caller = getattr(pm.hook, f"register_{kind}s")
        # pluggy lists implementations oldest first: built-ins register before third parties.
        for impl in caller.get_hookimpls():
            impl.function(register=functools.partial(registry.add, plugin=impl.plugin_name))
    return registries


def plugin_infos(pm: pluggy.PluginManager, registries: Registries) -> list[PluginInfo]:
    """Every loaded plugin with its distribution, version and what it registers."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    from doppelkit import __version__

    infos: dict[str, PluginInfo] = {}
    for name, plugin in pm.list_name_plugin():
        if name is None or plugin is None:
            continue
        dist = dists.get(id(plugin))
        if dist is not None:
            dist_name, version = dist.project_name, dist.version
        else:  # built-ins and plugins registered in code
            builtin = name in BUILTIN_PLUGINS
            dist_name, version = ("doppelkit", __version__) if builtin else ("(registered in code)", "")
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        infos[name] = PluginInfo(name, dist_name, version, hooks=hooks)
    for registry in registries:
        for reg in registry:
            if reg.plugin in infos:
                infos[reg.plugin].registers.setdefault(registry.kind, []).append(reg.name)
    return sorted(infos.values(), key=lambda i: (i.distribution != "doppelkit", i.name))


def scrub(
    pm_hook: Any, text: str, record: Callable[[str, int], None], config: ScrubConfig | None = None
) -> str:
    """Run the ``scrub_message`` chain over ``text`` (``config``: the core ``scrub`` section)."""
    if pm_hook is None:
        return text
    arguments: dict[str, Any] = {"record": record, "config": config or ScrubConfig()}
    for impl in reversed(pm_hook.scrub_message.get_hookimpls()):  # pluggy order: last registered first
        # Like pluggy's own calls, pass only the arguments an implementation declares.
        result = impl.function(text=text, **{k: v for k, v in arguments.items() if k in impl.argnames})
        if result is not None:
            text = result
    return text


class Scrubber:
    """The ``scrub_message`` chain set up once, for scrubbing many texts (``ingest``: all of them).

    :meth:`texts` gives what :func:`scrub` gives text by text — every implementation runs on
    every text in the same order, with the same ``record`` calls — except that the built-in
    scrubbers skip the texts their triggers rule out (:func:`doppelkit.builtins.scrubbers.candidates`
    searches all the texts at once), which is where ingest's time went. A text another plugin's
    hook changed before the built-ins see it is always scrubbed in full.
    """

    def __init__(self, pm_hook: Any, config: ScrubConfig | None = None) -> None:
        from doppelkit.builtins import scrubbers

        self.config = config or ScrubConfig()
        self._candidates = scrubbers.candidates
        # (function, keyword arguments besides text and record, passes record, is the built-in)
        self.chain: list[tuple[Callable[..., str | None], dict[str, Any], bool, bool]] = []
        if pm_hook is not None:
            for impl in reversed(pm_hook.scrub_message.get_hookimpls()):  # last registered first
                extra = {"config": self.config} if "config" in impl.argnames else {}
                builtin = impl.function is scrubbers.scrub_message
                self.chain.append((impl.function, extra, "record" in impl.argnames, builtin))
        self._has_builtin = any(builtin for *_, builtin in self.chain)

    def texts(self, texts: Sequence[str], record: Callable[[str, int], None]) -> list[str]:
        """``texts`` scrubbed; empty texts are left alone (there is nothing to redact)."""
        if not self.chain:
            return list(texts)
        maybe = self._candidates(texts, self.config) if self._has_builtin else set()
        out: list[str] = []
        for index, original in enumerate(texts):
            text = original
            if text:
                for function, extra, wants_record, builtin in self.chain:
                    if builtin and text is original and index not in maybe:
                        continue  # no built-in pattern can match this text
                    result = (
                        function(text=text, record=record, **extra)
                        if wants_record
                        else function(text=text, **extra)
                    )
                    if result is not None:
                        text = result
            out.append(text)
        return out


@functools.cache
def default_plugin_manager() -> pluggy.PluginManager:
    return get_plugin_manager()
