"""Publishing is atomic: whatever point a publisher dies at, readers see a complete version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from doppelkit import artifacts
from doppelkit.home import Home
from doppelkit.models import AdapterManifest

TEAM, USER = "T0TEST", "U0MAYA"


def _manifest() -> AdapterManifest:
    return AdapterManifest(
        version="v0",
        team=TEAM,
        persona_id=USER,
        persona_name="maya",
        base_model="tiny",
        trainer="lora",
        formatter="chat",
        template_hash="t",
        dataset_hash="d",
        doppelkit_version="0",
    )


def _writer(marker: str):  # type: ignore[no-untyped-def]
    def write(directory: Path) -> None:
        (directory / "adapter_config.json").write_text(json.dumps({"marker": marker}))
        (directory / "adapter_model.safetensors").write_bytes(marker.encode())
        (directory / "README.md").write_text("peft writes a model card; it is not published")

    return write


def test_versions_pointer_and_listing(doppelkit_home: Home) -> None:
    assert artifacts.current_version(doppelkit_home, TEAM, USER) is None
    first = artifacts.publish(doppelkit_home, TEAM, USER, _writer("one"), _manifest())
    second = artifacts.publish(doppelkit_home, TEAM, USER, _writer("two"), _manifest())
    assert (first.version, second.version) == ("v1", "v2")
    assert second.manifest.version == "v2"
    current = artifacts.current_version(doppelkit_home, TEAM, USER)
    assert current is not None and current.version == "v2" and current.path == second.path
    assert [v.version for v in artifacts.list_versions(doppelkit_home, TEAM, USER)] == ["v1", "v2"]
    assert sorted(p.name for p in second.path.iterdir()) == sorted(
        [*artifacts.ADAPTER_FILES, "manifest.json"]
    )


def test_a_failing_writer_publishes_nothing(doppelkit_home: Home) -> None:
    artifacts.publish(doppelkit_home, TEAM, USER, _writer("one"), _manifest())

    def broken(directory: Path) -> None:
        (directory / "adapter_config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        artifacts.publish(doppelkit_home, TEAM, USER, broken, _manifest())
    root = doppelkit_home.adapters(TEAM, USER)
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["CURRENT", "v1"]
    assert not list(root.glob(".staging-*"))


def test_a_bad_pointer_is_a_clear_error(doppelkit_home: Home) -> None:
    artifacts.publish(doppelkit_home, TEAM, USER, _writer("one"), _manifest())
    (doppelkit_home.adapters(TEAM, USER) / "CURRENT").write_text("../../etc\n")
    with pytest.raises(artifacts.ArtifactError, match="not a version name"):
        artifacts.current_version(doppelkit_home, TEAM, USER)


@pytest.mark.parametrize("point", ["publish:staged", "publish:renamed", "publish:pointer"])
def test_sigkill_at_each_publish_point(doppelkit_home: Home, point: str) -> None:
    artifacts.publish(doppelkit_home, TEAM, USER, _writer("one"), _manifest())
    script = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from doppelkit.home import Home
        from doppelkit.models import AdapterManifest
        from doppelkit import artifacts
        def write(directory):
            (directory / "adapter_config.json").write_text(json.dumps({{"marker": "two"}}))
            (directory / "adapter_model.safetensors").write_bytes(b"two")
        manifest = AdapterManifest.model_validate_json({_manifest().model_dump_json()!r})
        artifacts.publish(Home.at({str(doppelkit_home.root)!r}), {TEAM!r}, {USER!r}, write, manifest)
        """
    )
    env = {**os.environ, "DOPPELKIT_CRASH_AT": point}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr

    current = artifacts.current_version(doppelkit_home, TEAM, USER)
    assert current is not None
    versions = [v.version for v in artifacts.list_versions(doppelkit_home, TEAM, USER)]
    if point == "publish:pointer":  # died after the switch: the new version is complete and served
        assert current.version == "v2"
    else:  # died before the switch: the previous version is still served, untouched
        assert current.version == "v1"
        assert json.loads((current.path / "adapter_config.json").read_text()) == {"marker": "one"}
    for version in versions:  # whatever is visible is complete
        artifacts.read_version(doppelkit_home.adapters(TEAM, USER) / version)
    nxt = artifacts.publish(doppelkit_home, TEAM, USER, _writer("three"), _manifest())
    assert nxt.version == f"v{len(versions) + 1}"
    assert not list(doppelkit_home.adapters(TEAM, USER).glob(".staging-*"))
