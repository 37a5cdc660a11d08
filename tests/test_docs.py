"""The docs cannot rot: their Python code blocks run in the test suite.

* ``docs/python-api.md`` runs top to bottom in a fresh Python process (one namespace, as a
  reader would type it) on the bundled sample workspace with the tiny model; every value it
  prints as a check (``True``) must come out true.
* The plugin guides' blocks (``docs/plugins/*.md``) run with the imports a plugin module would
  have: they define hooks, components and tests, which must at least be valid Python that
  imports and defines cleanly.
* Every other Python block in the docs and READMEs shows a fragment of a running system (an
  engine, a fake Slack server in a test): it must compile, its imports must import, and every
  attribute it reads from an imported module or class must exist — a renamed or moved API
  breaks the test, not the reader.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [
        *ROOT.glob("docs/**/*.md"),
        ROOT / "README.md",
        *ROOT.glob("plugins/*/README.md"),
        *ROOT.glob("examples/*/README.md"),
    ]
)
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)

PLUGIN_MODULE_IMPORTS = """
from __future__ import annotations
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
import pytest
from pydantic import BaseModel, ConfigDict, Field
from doppelkit import hookimpl
from doppelkit.interfaces import RunContext
from doppelkit.models import ID, DatasetReport, Message, Thread, User, Workspace
from doppelkit.testing import run_cli
"""


def blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.slow
def test_the_python_api_page_runs_as_written(tmp_path: Path) -> None:
    script = "\n".join(blocks(ROOT / "docs" / "python-api.md"))
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    checks = [
        line
        for line in result.stdout.splitlines()
        if line in ("True", "False") or line.endswith((" True", " False"))
    ]
    assert checks and not any(line.endswith("False") for line in checks), result.stdout
    assert "v1 v1" in result.stdout.splitlines()[0]
    assert (tmp_path / "doppelkit-home" / "adapters").is_dir(), "it wrote under the home it was given"


@pytest.mark.parametrize("path", sorted(ROOT.glob("docs/plugins/*.md")), ids=relative)
def test_plugin_guide_blocks_run(path: Path) -> None:
    namespace: dict[str, object] = {}
    exec(compile(PLUGIN_MODULE_IMPORTS, "<imports>", "exec"), namespace)
    for number, block in enumerate(blocks(path), start=1):
        exec(compile(PLUGIN_MODULE_IMPORTS + block, f"{relative(path)} block {number}", "exec"), namespace)


def dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return None if head is None else [*head, node.attr]
    return None


@pytest.mark.parametrize("path", DOCS, ids=relative)
def test_every_python_block_uses_names_that_exist(path: Path) -> None:
    for number, block in enumerate(blocks(path), start=1):
        where = f"{relative(path)} block {number}"
        tree = ast.parse(block, where)
        namespace: dict[str, object] = {}
        imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
        exec(compile(ast.Module(body=imports, type_ignores=[]), where, "exec"), namespace)
        for node in ast.walk(tree):
            chain = dotted(node) if isinstance(node, ast.Attribute) else None
            if not chain or chain[0] not in namespace:
                continue
            value = namespace[chain[0]]
            for part in chain[1:]:
                if not (isinstance(value, type) or type(value).__name__ == "module"):
                    break  # an instance: its attributes are the running system's
                assert hasattr(value, part), f"{where}: {'.'.join(chain)} does not exist"
                value = getattr(value, part)
