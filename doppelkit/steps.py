"""The steps a backend runs: module-level functions of plain data.

A step receives the validated run configuration as a dict (:meth:`RunConfig.to_data`), persona
and team IDs, and returns plain data (paths relative to ``home``). The side that runs it
rebuilds the components from that configuration with the plugins installed there, so any
backend can run it: in this process (``local``), in a fresh Python process (``process``), on
another machine (``modal``). Nothing crosses the boundary but picklable values: no console, no
lock, no live object.

In this process a step reuses its caller's plugin manager and console (:func:`in_process`), so
plugins registered in code and a test's captured console keep working; anywhere else it builds
the default plugin manager (entry points, honouring ``DOPPELKIT_LOAD_PLUGINS`` /
``DOPPELKIT_BLOCK_PLUGINS``) and prints to standard error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from doppelkit import pipeline
from doppelkit.builtins.backends import require_device
from doppelkit.config import RunConfig, validate
from doppelkit.interfaces import RunContext

RunData = dict[str, Any]

INGEST_NEEDS = ("source", "formatter")
TRAIN_NEEDS = ("formatter", "trainer")
SERVE_NEEDS = ("engine", "frontend")


@dataclass(frozen=True)
class _Caller:
    """What a step run in its caller's process borrows from it."""

    hook: Any
    registries: Any
    console: Console


_caller: ContextVar[_Caller | None] = ContextVar("doppelkit_step_caller", default=None)


@contextlib.contextmanager
def in_process(context: RunContext) -> Iterator[None]:
    """Steps run in this process (by the ``local`` backend) borrow ``context``'s plugins and
    console; a step run elsewhere never sees them."""
    token = _caller.set(_Caller(context.hook, context.registries, context.console))
    try:
        yield
    finally:
        _caller.reset(token)


def rebuild(data: RunData, needs: tuple[str, ...]) -> tuple[RunConfig, RunContext]:
    """The run and its context from plain data, with this process's plugins."""
    from doppelkit.plugins import build_registries, default_plugin_manager

    caller = _caller.get()
    if caller is not None and caller.registries is not None:
        hook, registries, console = caller.hook, caller.registries, caller.console
    else:
        pm = default_plugin_manager()
        hook, registries = pm.hook, build_registries(pm)
        console = caller.console if caller is not None else Console(stderr=True)
    run = validate(data, registries, needs=needs)
    return run, pipeline.build_context(run, hook, console, registries)


def ingest(data: RunData) -> dict[str, Any]:
    """Read the workspace, write the persona's dataset, held-out split and report under home.

    Returns ``{"team", "user", "report"}`` (the report as JSON data)."""
    run, context = rebuild(data, INGEST_NEEDS)
    result = pipeline.ingest(run, context)
    return {
        "team": result.persona.team,
        "user": result.persona.id,
        "report": result.report.model_dump(mode="json"),
    }


def train(data: RunData, team: str, user: str, *, device: str | None = None) -> dict[str, Any]:
    """Fine-tune and publish an adapter from the dataset of persona ``user`` of ``team``.

    ``device``: where to train (the backend's ``device``; ``None``: the trainer decides).
    Returns ``{"version", "adapter_dir" (relative to home), "metrics"}``; a backend that leaves the
    adapter elsewhere adds ``"location"`` (where it is, for people)."""
    require_device(device)
    run, context = rebuild(data, TRAIN_NEEDS)
    context.device = device
    result = pipeline.train_persona(run, context, team, user)
    return {
        "version": result.version,
        "adapter_dir": _relative(result.adapter_dir, context.home.root),
        "metrics": result.metrics,
    }


def serve(data: RunData, *, device: str | None = None) -> None:
    """Build the engine and the frontend and serve until the frontend returns."""
    require_device(device)
    run, context = rebuild(data, SERVE_NEEDS)
    context.device = device
    pipeline.serve_engine(run, context)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:  # a trainer that publishes outside home: keep the absolute path
        return str(path)
