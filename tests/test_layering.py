"""The layering shows the data path, and stays that way: import-linter's contracts (in
pyproject.toml) hold, and no package's modules import each other in a circle."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("doppelkit", "doppelkit_slack", "doppelkit_lora", "doppelkit_modal", "doppelkit_jsonl")
LAZY_EXPORTS = {"doppelkit.api", "doppelkit.errors"}


def test_the_import_contracts_hold(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lint_imports = pytest.importorskip("importlinter.cli").lint_imports
    monkeypatch.chdir(ROOT)
    exit_code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert exit_code == 0, report[-4000:]
    assert "0 broken" in report


def import_cycles() -> list[list[str]]:
    """Groups of modules that import each other, directly or not (Tarjan's algorithm)."""
    import grimp  # import-linter's import graph

    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    known = set(modules)
    edges = {m: sorted(set(graph.find_modules_directly_imported_by(m)) & known) for m in modules}
    # `import doppelkit` gives the Python API's names on first use (its module __getattr__):
    # an import at attribute time, not a dependency of the package on the API.
    edges["doppelkit"] = [m for m in edges["doppelkit"] if m not in LAZY_EXPORTS]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in modules:
        if module not in index:
            visit(module)
    return cycles


def test_no_import_circles() -> None:
    assert import_cycles() == []
