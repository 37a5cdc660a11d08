"""The hooks reference cannot drift from the code (datasette's rule, checked both ways):
every hook has a section whose signature line is the hook's signature, and the interface
table lists exactly each kind's protocol methods and contract suite."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from doppelkit import hookspecs, interfaces
from doppelkit.interfaces import KINDS
from doppelkit.testing import contracts

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins" / "hooks.md"
HOOKS = sorted(
    name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "doppelkit_spec")
)
PROTOCOLS = {kind: getattr(interfaces, kind.capitalize()) for kind in KINDS}


def sections() -> dict[str, str]:
    parts = re.split(r"^## (\w[\w ]*)$", DOCS.read_text(encoding="utf-8"), flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def signature(hook: str) -> str:
    """``name(arg: type, …) -> type`` as written in hookspecs.py."""
    sig = inspect.signature(getattr(hookspecs, hook))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{hook}({params}) -> {sig.return_annotation}"


def protocol_methods(kind: str) -> list[str]:
    protocol = PROTOCOLS[kind]
    return [name for name, value in vars(protocol).items() if not name.startswith("_") and callable(value)]


def interface_table() -> dict[str, list[str]]:
    rows = re.findall(
        r"^\| (\w+) \| (.+?) \| `(\w+)` \| `(\w+)` \|$", sections()["Component interfaces"], re.M
    )
    return {kind: [methods, suite, hook] for kind, methods, suite, hook in rows}


def test_there_are_hooks() -> None:
    assert {"register_sources", "register_engines", "scrub_message", "forget_person"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_signature(hook: str) -> None:
    documented = sections()
    assert hook in documented, f"add a '## {hook}' section to {DOCS}"
    first = re.search(r"`([^`]+)`", documented[hook])
    assert first is not None and first.group(1) == signature(hook), (
        f"the '## {hook}' section must open with `{signature(hook)}`"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring(hook: str) -> None:
    assert (getattr(hookspecs, hook).__doc__ or "").strip()


def test_every_documented_hook_exists() -> None:
    documented = {name for name in sections() if re.fullmatch(r"[a-z_]+", name)}
    assert documented == set(HOOKS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_interface_table_matches_the_protocol(kind: str) -> None:
    table = interface_table()
    assert kind in table, f"add a row for {kind} to the interface table in {DOCS}"
    methods, suite, hook = table[kind]
    assert re.findall(r"`(\w+)`", methods) == protocol_methods(kind)
    assert hasattr(contracts, suite), f"{suite} is not in doppelkit.testing.contracts"
    assert hook == f"register_{kind}s" and hook in HOOKS


def test_the_table_has_no_kind_the_code_lacks() -> None:
    assert set(interface_table()) == set(KINDS)


def test_architecture_lists_every_kind() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\w+) \| ", text.split("## Plugin kinds", 1)[1].split("\n## ", 1)[0], re.M)
    assert [r for r in rows if r != "kind"] == list(KINDS)
