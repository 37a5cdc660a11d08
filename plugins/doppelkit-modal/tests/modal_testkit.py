"""Shared pieces of the modal backend's tests: running verbs in this process under LocalModal."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from doppelkit.cli import run_verb
from doppelkit.config import RunConfig, compose, validate
from doppelkit.home import Home
from doppelkit.plugins import build_registries, default_plugin_manager
from doppelkit_lora.testing import SECONDS_TO_TRAIN
from doppelkit_modal.testing import LocalModal

PERSONA = "maya"  # the bundled sample workspace's demo persona
TEAM = "T0LANTERN1"
USER = "U0MAYA0001"
CPU = ("backend.train_gpu=null", "backend.serve_gpu=null")  # the tests' "GPUs"
FAST = (*SECONDS_TO_TRAIN, "trainer.checkpoint_every=2")


def overrides(modal: LocalModal, home: Path, *extra: str) -> list[str]:
    """A run on the sample workspace, trained in seconds, under ``modal``."""
    return [*modal.overrides(), *CPU, f"persona.user={PERSONA}", f"home={home}", *FAST, *extra]


def run(verb: str, args: list[str]) -> tuple[Any, str]:
    """``doppelkit VERB ARGS`` in this process (the harness is process-wide); result and output."""
    pm = default_plugin_manager()
    registries = build_registries(pm)
    out = io.StringIO()
    result = run_verb(verb, compose(args, registries), pm, registries, Console(file=out, width=160))
    return result, out.getvalue()


def validated(args: list[str]) -> RunConfig:
    registries = build_registries(default_plugin_manager())
    return validate(compose(args, registries), registries)


def manifest(home: Path | Home, version: str = "") -> dict[str, Any]:
    home = home if isinstance(home, Home) else Home.at(home)
    root = home.adapters(TEAM, USER)
    version = version or (root / "CURRENT").read_text().strip()
    return dict(json.loads((root / version / "manifest.json").read_text()))
