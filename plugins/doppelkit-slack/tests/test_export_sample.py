"""The bundled sample workspace: reproducible from its script, realistic, and a good demo."""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, PersonaSelector, Thread
from doppelkit.persona import resolve_persona
from doppelkit_slack.sources.export import SAMPLE_WORKSPACE, SlackExportSource

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_sample_workspace.py"
SHIPPED_ZIP = (
    Path(__file__).resolve().parents[1] / "src" / "doppelkit_slack" / "data" / "sample_workspace.zip"
)


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """The generator script (not part of the package), imported from its file."""
    spec = importlib.util.spec_from_file_location("make_sample_workspace", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def zip_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_the_shipped_sample_is_what_the_script_generates(script: Any, tmp_path: Path) -> None:
    shipped = zip_files(SHIPPED_ZIP)
    regenerated = script.sample_files()
    assert list(shipped) == list(regenerated), f"run `python {script.SCRIPT}`"
    assert shipped == regenerated, f"run `python {script.SCRIPT}`"
    assert script.MARKER in shipped["README.md"].decode()
    assert SHIPPED_ZIP.stat().st_size < 1_000_000  # compact: 3.7 MB of JSON unzipped
    # The script writes the same zip again, and an unzipped folder with the same files.
    assert zip_files(script.generate(tmp_path / "again.zip")) == shipped
    folder = script.generate(tmp_path / "folder")
    assert {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    } == shipped


def test_the_script_replaces_only_a_sample_it_wrote(script: Any, tmp_path: Path) -> None:
    precious = tmp_path / "export.zip"
    precious.write_bytes(b"not a sample")
    with pytest.raises(SystemExit, match="refusing to replace"):
        script.generate(precious)
    assert precious.read_bytes() == b"not a sample"


def read_all(
    path: Path | None, run_context: RunContext, **options: Any
) -> tuple[list[Thread], DatasetReport]:
    report = DatasetReport()
    source = SlackExportSource(SlackExportSource.Config(path=path, **options), run_context)
    return list(source.threads(report)), report


@pytest.mark.parametrize("include_private", [False, True])
def test_the_zip_reads_exactly_as_the_folder_did(run_context: RunContext, include_private: bool) -> None:
    from_zip, zip_report = read_all(SHIPPED_ZIP, run_context, include_private=include_private)
    from_folder, folder_report = read_all(SAMPLE_WORKSPACE, run_context, include_private=include_private)
    assert [t.model_dump() for t in from_zip] == [t.model_dump() for t in from_folder]
    assert zip_report.model_dump(exclude={"created"}) == folder_report.model_dump(exclude={"created"})
    zip_workspace = SlackExportSource(SlackExportSource.Config(path=SHIPPED_ZIP), run_context).workspace()
    folder_workspace = SlackExportSource(SlackExportSource.Config(path=SAMPLE_WORKSPACE), run_context)
    assert zip_workspace == folder_workspace.workspace()


def sample_threads(run_context: RunContext, **options: object) -> list[Thread]:
    source = SlackExportSource(SlackExportSource.Config(**options), run_context)
    return list(source.threads(DatasetReport()))


def test_maya_is_a_rich_demo_persona(run_context: RunContext) -> None:
    source = SlackExportSource(SlackExportSource.Config(), run_context)
    maya = resolve_persona(PersonaSelector(user="maya"), source.workspace())
    threads = sample_threads(run_context)
    replies = [
        m for t in threads for m in t.messages if m.user == maya.id and m.ts != t.ts and len(m.text) >= 30
    ]
    assert len(replies) >= 300
    lowercase = sum(m.text == m.text.lower() for m in replies)
    assert lowercase / len(replies) > 0.7  # her style is visible
    runs = sum(
        1
        for t in threads
        for a, b in zip(t.messages, t.messages[1:], strict=False)
        if a.user == b.user == maya.id
    )
    assert runs >= 20, "maya sometimes sends several messages in a row"


def test_the_sample_is_a_realistic_workspace(run_context: RunContext) -> None:
    threads = sample_threads(run_context)
    messages = [m for t in threads for m in t.messages]
    assert 2000 <= len(messages) <= 4000
    authors = Counter(m.user for m in messages if not m.is_bot)
    assert sum(1 for n in authors.values() if n >= 50) >= 5, "several people talk"
    assert any(m.is_bot for m in messages)
    assert len({t.channel for t in threads}) >= 4
    spanning = [t for t in threads if t.messages[-1].ts_key - t.messages[0].ts_key > 86_400]
    assert len(spanning) >= 20, "threads continue on later days"
    text = "\n".join(m.text for m in messages)
    for feature in ("```", "<https://", "|", "<@U", "&amp;", ":sparkles:"):
        assert feature in text
    assert any(m.edited for m in messages) and any(m.files and not m.text for m in messages)


def test_private_and_direct_messages_stay_out(run_context: RunContext) -> None:
    default = "\n".join(m.text for t in sample_threads(run_context) for m in t.messages)
    assert "CONFIDENTIAL-" not in default and "SECRET-" not in default
    opted_in = "\n".join(
        m.text for t in sample_threads(run_context, include_private=True) for m in t.messages
    )
    assert "CONFIDENTIAL-" in opted_in and "SECRET-" not in opted_in
    # ...and the sample really does contain them, so the checks above mean something.
    raw = json.dumps([json.loads(p.read_text()) for p in SAMPLE_WORKSPACE.glob("D*/*.json")])
    assert "SECRET-DM" in raw
