"""The bolt frontend's pure parts: output neutralising, splitting, avatars, persona lookup,
the guard's clock window, and the light import surface."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from doppelkit.home import Home
from doppelkit.models import DatasetReport, PersonaSelector, User
from doppelkit.testing.fakes import EchoEngine
from doppelkit_slack.bolt.avatar import disguise
from doppelkit_slack.bolt.guard import RequestGuard
from doppelkit_slack.bolt.personas import published_personas, resolve_command_line_persona
from doppelkit_slack.bolt.posting import WORD_JOINER, neutralise, outgoing_messages, split_message
from doppelkit_slack.testing.events import sign


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hi <!channel> and <!here|here>", "hi &lt;!channel&gt; and &lt;!here|here&gt;"),
        ("ping <@U123> or <@W9|bob>", "ping &lt;@U123&gt; or &lt;@W9|bob&gt;"),
        ("<!everyone> <https://evil.example|click>", "&lt;!everyone&gt; &lt;https://evil.example|click&gt;"),
        ("a & b", "a &amp; b"),
        ("@here now, @Channel too", f"@{WORD_JOINER}here now, @{WORD_JOINER}Channel too"),
        ("mail me at ann@here.org", "mail me at ann@here.org"),
    ],
)
def test_neutralise(raw: str, expected: str) -> None:
    assert neutralise(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Start one with `/doppel train <@U123>`", "Start one with `/doppel train &lt;@U123>`"),
        ("<!here> <#C1|general> <!subteam^S1>", "&lt;!here> &lt;#C1|general> &lt;!subteam^S1>"),
        ("@everyone look", f"@{WORD_JOINER}everyone look"),
        ("already &lt;@U1&gt; safe", "already &lt;@U1&gt; safe"),
    ],
)
def test_every_post_loses_raw_mentions(raw: str, expected: str) -> None:
    from doppelkit_slack.bolt.posting import without_pings

    assert without_pings(raw) == expected
    assert without_pings(expected) == expected  # idempotent
    assert without_pings(neutralise(raw)) == neutralise(raw)  # a no-op on persona replies


def test_split_prefers_paragraphs_then_lines_then_spaces() -> None:
    text = ("a" * 60 + "\n\n") * 3 + "b" * 30
    chunks = split_message(text, 130)
    assert all(len(c) <= 130 for c in chunks)
    assert chunks[0] == "a" * 60 + "\n\n" + "a" * 60
    assert split_message("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]
    assert split_message("  short  ", 100) == ["short"]
    assert split_message("", 100) == []


def test_outgoing_messages_stay_under_the_limit_after_escaping() -> None:
    parts = ["<" * 5000, "fine"]
    out = outgoing_messages(parts, 4000)
    assert out[-1] == "fine"
    assert all(len(m) <= 4000 for m in out)
    assert "".join(out[:-1]) == "&lt;" * 5000


def test_disguise_draws_on_the_avatar() -> None:
    from PIL import Image

    original = io.BytesIO()
    Image.new("RGB", (64, 64), (250, 200, 160)).save(original, format="JPEG")
    png = disguise(original.getvalue())
    with Image.open(io.BytesIO(png)) as result:
        assert result.format == "PNG" and result.size == (192, 192)
        assert result.convert("RGB").getpixel((66, 78))[0] < 60  # a dark lens over the eye
        assert result.convert("RGB").getpixel((10, 180))[0] > 200  # the rest is untouched


def test_command_line_persona_resolves_from_what_the_engine_serves(tmp_path: Path) -> None:
    home = Home.at(tmp_path)
    engine = EchoEngine(versions={("T1", "U0ERIK"): "v1"}, labels={"U0ERIK": "Erik L"})
    assert [p.name for p in published_personas(home, engine)] == ["Erik L"]
    by_name = resolve_command_line_persona(PersonaSelector(user="erik l"), home, engine)
    assert by_name is not None and (by_name.user_id, by_name.team) == ("U0ERIK", "T1")
    by_id = resolve_command_line_persona(PersonaSelector(user="U0ERIK"), home, engine)
    assert by_id is not None and by_id.team == "T1"
    unknown_id = resolve_command_line_persona(PersonaSelector(user="U0OTHER"), home, engine)
    assert unknown_id is not None and (unknown_id.user_id, unknown_id.team) == ("U0OTHER", None)
    a_name = resolve_command_line_persona(PersonaSelector(user="maya"), home, engine)
    assert a_name is not None and a_name.user_id is None and a_name.query == "maya"
    assert resolve_command_line_persona(PersonaSelector(), home, engine) is None


def test_personas_with_only_a_dataset_are_listed_untrained(tmp_path: Path) -> None:
    home = Home.at(tmp_path)
    maya = User(id="U0MAYA", name="maya.okafor", display_name="maya", real_name="Maya Okafor")
    report = DatasetReport(team="T1", persona_id="U0MAYA", persona_name="maya", persona_user=maya)
    path = home.datasets("T1", "U0MAYA") / "dataset.report.json"
    path.parent.mkdir(parents=True)
    path.write_text(report.model_dump_json())
    (path.parent.parent / "stray.report.json").write_text("{not json")
    listed = published_personas(home, EchoEngine())
    assert [(p.user_id, p.version, p.user.real_name) for p in listed] == [("U0MAYA", None, "Maya Okafor")]
    chosen = resolve_command_line_persona(PersonaSelector(user="Maya Okafor"), home, EchoEngine())
    assert chosen is not None and (chosen.user_id, chosen.team) == ("U0MAYA", "T1")


def _guarded_status(guard: RequestGuard, headers: dict[str, str], body: bytes) -> int:
    sent: list[dict[str, Any]] = []
    reached: list[bytes] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard.app = inner
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/slack/events",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    chunks = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.request", "body": body[10:]},
    ]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    if sent[0]["status"] == 200:
        assert reached == [body], "the guard hands Bolt the exact body it verified"
    return int(sent[0]["status"])


@pytest.mark.parametrize(("age", "status"), [(0, 200), (300, 200), (-300, 200), (301, 401), (-301, 401)])
def test_the_guard_clock_window_is_300_seconds(age: int, status: int) -> None:
    now = 1_800_000_000
    guard = RequestGuard(
        None, signing_secret="s", path="/slack/events", max_body_bytes=1000, clock=lambda: now
    )  # type: ignore[arg-type]
    body = b'{"type": "event_callback", "event": {}}'
    stamp = str(now - age)
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign("s", stamp, body),
    }
    assert _guarded_status(guard, headers, body) == status


def test_the_guard_caps_streamed_bodies_without_a_content_length() -> None:
    guard = RequestGuard(None, signing_secret="s", path="/slack/events", max_body_bytes=1024)  # type: ignore[arg-type]
    body = b"{" + b" " * 2000 + b"}"
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": "1",
        "X-Slack-Signature": "v0=x",
    }
    assert _guarded_status(guard, headers, body) == 413


def test_the_plugin_entry_point_stays_light() -> None:
    code = (
        "import sys, doppelkit_slack.plugin as p, doppelkit_slack.bolt;"
        "heavy = [m for m in ('slack_bolt', 'sqlalchemy', 'uvicorn', 'PIL') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
