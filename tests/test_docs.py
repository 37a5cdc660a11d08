"""The docs cannot rot: their Python code blocks run in the test suite.

* ``docs/python-api.md`` runs top to bottom in a fresh Python process (one namespace, as a
  reader would type it) on the bundled sample workspace with the tiny model; every value it
  prints as a check (``True``) must come out true.
* The plugin guides' blocks (``docs/plugins/*.md``) run with the imports a plugin module would
  have: they define hooks, components and tests, which must at least be valid Python that
  imports and defines cleanly.
* Every other Python block in the docs and READMEs must compile (they show fragments of a
  running system: an engine, a fake Slack server in a test).
"""

from __future__ import annotations

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


@pytest.mark.parametrize("path", DOCS, ids=relative)
def test_every_python_block_compiles(path: Path) -> None:
    for number, block in enumerate(blocks(path), start=1):
        compile(block, f"{relative(path)} block {number}", "exec")
