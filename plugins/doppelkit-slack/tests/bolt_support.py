"""Shared pieces of the bolt frontend tests: a small FakeSlack workspace and a running bot.

The workspace (team ``T0001``) has Ann, Bob, two people called Alex, Olga (a workspace admin,
``U0001``: who sends test slash commands unless they say otherwise) and the bot, a channel
``C0001`` and a DM ``D0001``. :meth:`Bot.send` stores an event's message in the fake before
delivering the event, as Slack does, so the bot can read the thread and reply in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from doppelkit.testing.fakes import EchoEngine
from doppelkit.testing.helpers import make_context
from doppelkit_slack.bolt.config import BoltConfig
from doppelkit_slack.bolt.runtime import BoltRuntime, build_runtime
from doppelkit_slack.bolt.server import HttpServer, asgi_app
from doppelkit_slack.testing import FakeSlack
from doppelkit_slack.testing.bolt import wait_idle
from doppelkit_slack.testing.events import EventSender, Response, app_mention
from doppelkit_slack.testing.fake_workspace import BotIdentity, Conversation, FakeWorkspace, Post

TEAM = "T0001"
BOT_USER = "UBOT0001"
BOT_ID = "BBOT0001"
SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
CHANNEL = "C0001"
DM = "D0001"
ROOT_TS = "1700000000.000100"
ADMIN = "U0001"  # the default sender of slash commands (doppelkit_slack.testing.events)


def member(
    user_id: str, display_name: str, real_name: str = "", *, is_bot: bool = False, is_admin: bool = False
) -> dict[str, Any]:
    return {
        "id": user_id,
        "name": display_name.lower().replace(" ", "."),
        "is_bot": is_bot,
        "is_admin": is_admin,
        "deleted": False,
        "profile": {"display_name": display_name, "real_name": real_name or display_name},
    }


def default_members() -> list[dict[str, Any]]:
    return [
        member("U_ANN", "Ann"),
        member("U_BOB", "Bob"),
        member("U_AL1", "Alex", "Alex Smith"),
        member("U_AL2", "Alex", "Alex Jones"),
        member(ADMIN, "Olga", "Olga Admin", is_admin=True),
    ]


def fake_slack() -> FakeSlack:
    """A started FakeSlack over the small test workspace (stop it when done)."""
    workspace = FakeWorkspace(
        team_id=TEAM,
        users=default_members(),
        conversations=[
            Conversation(CHANNEL, "public", {"id": CHANNEL, "name": "general"}),
            Conversation(DM, "im", {"id": DM, "user": "U_BOB"}),
        ],
        bot=BotIdentity(user_id=BOT_USER, bot_id=BOT_ID, name="doppel"),
    )
    return FakeSlack(workspace, token=TOKEN).start()


def store_event_message(slack: FakeSlack, event: dict[str, Any]) -> None:
    """Put the message an event is about into the fake (Slack has it before it sends the event)."""
    message = {k: event[k] for k in ("ts", "user", "text", "thread_ts", "bot_id") if k in event}
    slack.workspace.add_message(event["channel"], message)


def wait_for_posts(slack: FakeSlack, n: int, timeout: float = 5.0) -> list[Post]:
    deadline = time.monotonic() + timeout
    while len(slack.posts) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(slack.posts)


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


@dataclass
class Bot:
    runtime: BoltRuntime
    server: HttpServer
    sender: EventSender
    engine: EchoEngine
    slack: FakeSlack

    def send(self, event: dict[str, Any], **kwargs: Any) -> Response:
        store_event_message(self.slack, event)
        return self.sender.send_event(event, team=TEAM, **kwargs)

    def mention(self, text: str = "how are you?", *, ts: str = ROOT_TS, **kwargs: Any) -> Response:
        event = app_mention(f"<@{BOT_USER}> {text}", user="U_BOB", channel=CHANNEL, ts=ts, team=TEAM)
        return self.send(event, **kwargs)


def start_bot(
    tmp_path: Path, slack: FakeSlack, engine: EchoEngine, *, persona: str | None = "U_ANN", **config: Any
) -> Bot:
    options = {"mode": "http", "port": 0, "api_url": slack.url, "api_retries": 2, "api_retry_backoff": 0.01}
    # consent="none": these bots test training itself; test_bolt_consent.py asks first
    settings = BoltConfig(**{**options, "avatar": "none", "consent": "none", **config})
    context = make_context(tmp_path / "home", persona=persona)
    runtime = build_runtime(settings, context, engine, bot_token=TOKEN, signing_secret=SECRET)
    server = HttpServer(asgi_app(runtime, SECRET), "127.0.0.1", 0).start()
    return Bot(runtime, server, EventSender(server.url + settings.path, SECRET), engine, slack)


def stop_bot(bot: Bot) -> None:
    bot.server.stop()
    bot.runtime.close()


def replies(bot: Bot, n: int = 1, settle: float = 0.3) -> list[Post]:
    """The posts once ``n`` arrived, after a short wait for any extra (duplicate) post."""
    wait_for_posts(bot.slack, n)
    time.sleep(settle)
    wait_idle(bot.runtime)
    return list(bot.slack.posts)


POSTGRES_URL = os.environ.get("DOPPELKIT_TEST_POSTGRES_URL")


@contextlib.contextmanager
def database(kind: str) -> Iterator[str | None]:
    """A store URL for ``kind``: None (SQLite under home) or, for ``postgres``, a private schema
    on DOPPELKIT_TEST_POSTGRES_URL (every table the bot makes lands there; dropped after).
    Without that variable the test is skipped; with it, an unreachable server fails the test."""
    if kind == "sqlite":
        yield None
        return
    if not POSTGRES_URL:
        pytest.skip("set DOPPELKIT_TEST_POSTGRES_URL to run the bot on PostgreSQL")
    schema = f"doppel_bot_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def serve_cli(home: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``doppelkit serve frontend=bolt ARGS`` in a subprocess (the real command line)."""
    return subprocess.Popen(
        [sys.executable, "-m", "doppelkit.cli", "serve", "frontend=bolt", *args],
        env={**os.environ, "DOPPELKIT_HOME": str(home), "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def url_after(process: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    """The URL that follows ``marker`` ("listening on", "installs at") on the server's stderr."""
    assert process.stderr is not None
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        line = ""
        while marker not in line:
            line = process.stderr.readline()
            assert line, f"the server exited before printing {marker!r}"
    finally:
        timer.cancel()
    return re.search(re.escape(marker) + r" (\S+)", line).group(1)  # type: ignore[union-attr]


def health(url: str) -> tuple[int, dict[str, Any]]:
    """``GET url`` (a ``/healthz``): the HTTP status and the JSON report."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
