"""The doppelkit-slack wheel: the sample workspace ships as one zip and works from an installed
(non-editable) copy; the generator script and loose sample JSON stay out."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(PLUGIN)], check=True
    )
    (built,) = dist.glob("doppelkit_slack-*.whl")
    return built


def test_the_wheel_ships_the_sample_as_one_zip(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "doppelkit_slack/data/sample_workspace.zip" in names
    assert not [n for n in names if n.endswith(".json")], "no loose sample JSON"
    assert not [n for n in names if "make_sample_workspace" in n or "sample_workspace.py" in n]
    for module in ("sources/export.py", "bolt/mentions.py", "testing/__init__.py", "webclient.py"):
        assert f"doppelkit_slack/{module}" in names


def test_an_installed_wheel_reads_its_bundled_sample(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    code = (
        "import doppelkit_slack.sources.export as e, sys, tempfile, pathlib\n"
        "from doppelkit.models import DatasetReport\n"
        "from doppelkit.testing.helpers import make_context\n"
        f"assert e.__file__.startswith({str(site)!r}), e.__file__\n"
        "context = make_context(pathlib.Path(tempfile.mkdtemp()))\n"
        "source = e.SlackExportSource(e.SlackExportSource.Config(), context)\n"
        "print(source.workspace().default_persona, sum(1 for _ in source.threads(DatasetReport())))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    persona, threads = result.stdout.split()
    assert persona == "U0MAYA0001" and int(threads) > 500
