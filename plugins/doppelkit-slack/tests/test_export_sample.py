"""The bundled sample workspace: one zip reproducible from its script, stable datasets, realistic,
and a good demo."""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from collections import Counter
from hashlib import sha256
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, PersonaSelector, Thread
from doppelkit.persona import resolve_persona
from doppelkit.testing import run_cli
from doppelkit_slack.sources.export import SAMPLE_PERSONA, SAMPLE_WORKSPACE, SlackExportSource

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_sample_workspace.py"


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
    shipped = zip_files(SAMPLE_WORKSPACE)
    regenerated = script.sample_files()
    assert list(shipped) == list(regenerated), f"run `python {script.SCRIPT}`"
    assert shipped == regenerated, f"run `python {script.SCRIPT}`"
    assert script.MARKER in shipped["README.md"].decode()
    assert SAMPLE_WORKSPACE.stat().st_size < 1_000_000  # compact: 3.7 MB of JSON unzipped
    assert zip_files(script.generate(tmp_path / "again.zip")) == shipped


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
def test_the_zip_reads_exactly_as_the_unzipped_folder(
    script: Any, run_context: RunContext, tmp_path: Path, include_private: bool
) -> None:
    """The sample used to ship as a folder; the script still writes that form. Both read alike."""
    folder = script.generate(tmp_path / "folder")
    from_zip, zip_report = read_all(None, run_context, include_private=include_private)
    from_folder, folder_report = read_all(folder, run_context, include_private=include_private)
    assert [t.model_dump() for t in from_zip] == [t.model_dump() for t in from_folder]
    assert zip_report.model_dump(exclude={"created"}) == folder_report.model_dump(exclude={"created"})
    zip_workspace = SlackExportSource(SlackExportSource.Config(), run_context).workspace()
    folder_workspace = SlackExportSource(SlackExportSource.Config(path=folder), run_context).workspace()
    assert zip_workspace.model_dump(exclude={"default_persona"}) == folder_workspace.model_dump(
        exclude={"default_persona"}
    )
    assert zip_workspace.default_persona == SAMPLE_PERSONA  # only the bundled sample names one


# sha256 of what `doppelkit ingest persona.user=maya` writes from the sample. They were taken when
# the sample still shipped as a folder and must not change unless the sample or the formatter does
# (then update them, and say why in the commit).
SAMPLE_DIGESTS = {
    "dataset.jsonl": "10a39cdd8cd1ec4038c13460daa0fdc7969169ba1ff769943c9890cb62328003",
    "dataset.eval.jsonl": "e3646ca684ecee0a5e49a5b85051046ebf77269ebd9ff42c4753333cdc8f3075",
    "corpus": "c4269069a8e633f8d92133f82a427a2a0bdba80982b9ae1cab0f9d141abee817",
}


def test_the_samples_maya_dataset_stays_the_same(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run_cli(
        ["ingest", "persona.user=maya", f"home={home}"],
        cwd=tmp_path,
        env={"DOPPELKIT_LOAD_PLUGINS": "slack"},
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    datasets = home / "datasets" / "T0LANTERN1" / SAMPLE_PERSONA
    [corpus] = (home / "cache" / "corpus" / "T0LANTERN1").glob("*.jsonl")
    digests = {
        "dataset.jsonl": sha256((datasets / "dataset.jsonl").read_bytes()).hexdigest(),
        "dataset.eval.jsonl": sha256((datasets / "dataset.eval.jsonl").read_bytes()).hexdigest(),
        "corpus": sha256(corpus.read_bytes()).hexdigest(),
    }
    assert digests == SAMPLE_DIGESTS


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
    shipped = zip_files(SAMPLE_WORKSPACE)
    raw = json.dumps([json.loads(data) for name, data in shipped.items() if name.startswith("D")])
    assert "SECRET-DM" in raw
