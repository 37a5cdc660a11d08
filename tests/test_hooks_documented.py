"""Every hook is documented in docs/plugins/hooks.md (datasette's rule)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from doppelkit import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins" / "hooks.md"
HOOKS = sorted(
    name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "doppelkit_spec")
)


def test_there_are_hooks() -> None:
    assert "register_sources" in HOOKS and "scrub_message" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    headings = re.findall(r"^## (\w+)$", DOCS.read_text(encoding="utf-8"), flags=re.M)
    assert hook in headings, f"add a '## {hook}' section to {DOCS}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring(hook: str) -> None:
    assert (getattr(hookspecs, hook).__doc__ or "").strip()
