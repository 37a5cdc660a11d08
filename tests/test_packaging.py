"""An installed (non-editable) wheel carries its configs and works outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)], check=True
    )
    (wheel,) = dist.glob("doppelkit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert "doppelkit/configs/doppelkit.yaml" in zf.namelist()
        assert "doppelkit/configs/source/slack_export.yaml" in zf.namelist()
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def test_wheel_composes_from_its_own_configs(installed_wheel: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed_wheel)}
    code = (
        "import doppelkit.config as c, sys; d = c.config_dir(); print(d);"
        f"sys.exit(0 if str(d).startswith({str(installed_wheel)!r}) else 3)"
    )
    where = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert where.returncode == 0, where.stdout + where.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "doppelkit", "--cfg", "job", "+backend=modal"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert "name: modal" in shown.stdout
