"""Small helpers shared by the fixtures, the contract suites and plugin tests."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from doppelkit.home import Home
from doppelkit.interfaces import RunContext
from doppelkit.models import PersonaSelector
from doppelkit.registry import Registries
from doppelkit.settings import Settings


def make_context(
    home: Path,
    hook: Any = None,
    persona: str | None = None,
    *,
    registries: Registries | None = None,
    settings: Settings | None = None,
) -> RunContext:
    """A RunContext over ``home`` whose console writes to a string buffer.

    ``registries`` default to the built-ins' (a hermetic plugin manager), so an engine built on
    this context finds the built-in formatters; ``settings`` default to the core defaults."""
    if registries is None:
        from doppelkit.plugins import build_registries, get_plugin_manager

        registries = build_registries(get_plugin_manager(load_entrypoints=False))
    if settings is None:
        settings = Settings(home=Home.at(home).root, persona=PersonaSelector(user=persona))
    return RunContext(
        settings=settings,
        console=Console(file=io.StringIO(), width=120),
        hook=hook,
        registries=registries,
    )


def run_cli(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``doppelkit ARGS`` in a subprocess (the real entry point, exit codes and all)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "doppelkit.cli", *args],
        cwd=cwd,
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
