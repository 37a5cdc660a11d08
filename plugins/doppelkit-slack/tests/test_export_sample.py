"""The bundled sample workspace: reproducible from its script, realistic, and a good demo."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, PersonaSelector, Thread
from doppelkit.persona import resolve_persona
from doppelkit_slack.sample_workspace import MARKER, generate
from doppelkit_slack.sources.export import SAMPLE_WORKSPACE, SlackExportSource


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_shipped_sample_is_what_the_script_generates(tmp_path: Path) -> None:
    regenerated = generate(tmp_path / "sample")
    shipped = files_of(SAMPLE_WORKSPACE)
    assert files_of(regenerated) == shipped, "run `python -m doppelkit_slack.sample_workspace`"
    assert MARKER in shipped["README.md"].decode()
    assert sum(len(data) for data in shipped.values()) < 5_000_000


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
