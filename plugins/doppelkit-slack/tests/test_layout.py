"""The package layout shows the data path, and its imports keep it that way.

Imports are read from the source (every ``import`` statement, including those inside
functions), so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "doppelkit_slack"
SHARED = {"doppelkit_slack.messages", "doppelkit_slack.webclient", "doppelkit_slack.store"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports (``from pkg import module`` counts as the module)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    imported.add(target)
        graph[name] = imported
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    found.append([*path, start])
                elif nxt not in path and nxt > start:  # each circle once, from its smallest module
                    stack.append((nxt, [*path, nxt]))
    return found


def test_no_import_circles() -> None:
    assert cycles(import_graph()) == []


def test_the_layers() -> None:
    graph = import_graph()
    for module, imported in graph.items():
        if not module.startswith("doppelkit_slack.testing"):
            testing = {m for m in imported if m.startswith("doppelkit_slack.testing")}
            assert not testing, f"production module {module} imports test tooling {testing}"
        if module.startswith("doppelkit_slack.sources"):
            assert not {m for m in imported if m.startswith("doppelkit_slack.bolt")}, module
        if module.startswith("doppelkit_slack.bolt"):
            assert not {m for m in imported if m.startswith("doppelkit_slack.sources")}, module
        if module in SHARED:  # shared plumbing depends on neither side
            assert not {
                m for m in imported if m.startswith(("doppelkit_slack.sources", "doppelkit_slack.bolt"))
            }
    # The bot and both sources parse messages with the one parser.
    for user in (
        "doppelkit_slack.sources.export",
        "doppelkit_slack.sources.api",
        "doppelkit_slack.bolt.mentions",
    ):
        assert "doppelkit_slack.messages" in graph[user], user


def test_the_package_holds_code_and_one_data_file() -> None:
    files = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*") if p.is_file()}
    files = {f for f in files if "__pycache__" not in f}
    data = {f for f in files if not f.endswith(".py")}
    assert data == {"data/sample_workspace.zip"}
    assert not any("sample_workspace" in f for f in files if f.endswith(".py")), "the generator is a script"
