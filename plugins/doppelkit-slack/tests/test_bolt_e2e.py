"""End to end against FakeSlack serving the bundled sample workspace: the real Bolt app over
HTTP, signed events in, posts read back from the fake.

The last test uses the real trained tiny demo persona when ``DOPPELKIT_TEST_DEMO_HOME`` names a
home where ``doppelkit persona.user=erik`` has run (training takes minutes, so it is opt-in).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bolt_support import SECRET

from doppelkit.interfaces import Engine
from doppelkit.testing.fakes import EchoEngine
from doppelkit.testing.helpers import make_context
from doppelkit_slack.bolt.frontend import BoltConfig
from doppelkit_slack.bolt.runtime import BoltRuntime, build_runtime
from doppelkit_slack.bolt.server import HttpServer, asgi_app
from doppelkit_slack.sample_workspace import DEFAULT_TARGET, ERIK, TEAM
from doppelkit_slack.testing import DEFAULT_TOKEN, FakeSlack
from doppelkit_slack.testing_events import EventSender, app_mention

CHANNEL = "C0GENERAL1"
ASKER = "U0PRIYA003"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.from_export(DEFAULT_TARGET, retry_after=0.05) as fake:
        yield fake


class Running:
    def __init__(self, home: Path, slack: FakeSlack, engine: Engine, **config: Any) -> None:
        options = {
            "mode": "http",
            "port": 0,
            "api_url": slack.url,
            "avatar": "none",
            "api_retry_backoff": 0.01,
        }
        settings = BoltConfig(**{**options, **config})
        context = make_context(home, persona="erik")
        self.slack = slack
        self.runtime: BoltRuntime = build_runtime(
            settings, context, engine, bot_token=DEFAULT_TOKEN, signing_secret=SECRET
        )
        self.server = HttpServer(asgi_app(self.runtime, SECRET), "127.0.0.1", 0).start()
        self.sender = EventSender(self.server.url + settings.path, SECRET)
        self.bot_user = slack.workspace.bot.user_id

    def ask(self, text: str, *, thread_ts: str | None = None, **kwargs: Any) -> tuple[str, Any]:
        stored = self.slack.workspace.add_message(
            CHANNEL,
            {
                "user": ASKER,
                "text": f"<@{self.bot_user}> {text}",
                **({"thread_ts": thread_ts} if thread_ts else {}),
            },
        )
        event = app_mention(
            stored["text"], user=ASKER, channel=CHANNEL, ts=stored["ts"], thread_ts=thread_ts, team=TEAM
        )
        return stored["ts"], self.sender.send_event(event, team=TEAM, **kwargs)

    def posts_after(self, n: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.slack.posts) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        self.runtime.wait_idle()
        return list(self.slack.posts)

    def close(self) -> None:
        self.server.stop()
        self.runtime.close()


@pytest.fixture
def running(tmp_path: Path, slack: FakeSlack) -> Iterator[Running]:
    # persona.user=erik resolves through users.list (no adapter under this home): a name, per team.
    bot = Running(tmp_path / "home", slack, EchoEngine(versions={(TEAM, ERIK.id): "v1"}))
    yield bot
    bot.close()


def test_mention_reply_and_follow_up_in_the_same_thread(running: Running) -> None:
    root, response = running.ask("are we deploying today?")
    assert response.status == 200
    [post] = running.posts_after(1)
    assert (post.channel, post.thread_ts, post.username) == (CHANNEL, root, "Erik L-bot")
    assert post.text == f"Erik L says: &lt;@{running.bot_user}&gt; are we deploying today?"

    follow_up, _ = running.ask("and tomorrow?", thread_ts=root, retry_num=None)
    posts = running.posts_after(2)
    assert len(posts) == 2 and posts[1].thread_ts == root
    engine = running.runtime.parts.replier.engine
    assert isinstance(engine, EchoEngine)
    seen = engine.calls[-1].thread
    assert [m.ts for m in seen.messages] == [root, posts[0].ts, follow_up]
    mine = seen.messages[1]
    assert (mine.user, mine.is_bot) == (ERIK.id, False), "the bot's earlier post is the persona's own turn"
    assert seen.user_labels[ASKER] == "Priya"


def test_retries_and_concurrent_redelivery_post_once(running: Running) -> None:
    import threading

    stored = running.slack.workspace.add_message(
        CHANNEL, {"user": ASKER, "text": f"<@{running.bot_user}> hi"}
    )
    event = app_mention(stored["text"], user=ASKER, channel=CHANNEL, ts=stored["ts"], team=TEAM)
    deliveries = [None, 1, 2, 3]
    threads = [
        threading.Thread(
            target=running.sender.send_event,
            args=(event,),
            kwargs={"team": TEAM, "event_id": "EvE2E", "retry_num": n},
        )
        for n in deliveries
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(running.posts_after(1)) == 1
    assert running.slack.count("chat.postMessage") == 1


def test_forged_requests_are_refused(running: Running) -> None:
    stored_ts = "1710000000.000100"
    event = app_mention("<@x> hi", user=ASKER, channel=CHANNEL, ts=stored_ts, team=TEAM)
    assert running.sender.send_event(event, team=TEAM, signature="v0=" + "a" * 64).status == 401
    assert running.sender.send_event(event, team=TEAM, skew=-301).status == 401
    time.sleep(0.1)
    assert running.slack.posts == []


def test_rate_limited_then_failing_web_api(running: Running) -> None:
    running.slack.rate_limits["chat.postMessage"] = (0, 60.0)  # every call: 429, Retry-After 0.05 s
    running.ask("busy?")
    deadline = time.monotonic() + 5
    while running.slack.count("chat.postMessage", status=429) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    running.runtime.wait_idle()
    assert running.slack.count("chat.postMessage", status=429) == 4  # first try + 3 retries, then gave up
    assert running.slack.posts == []
    running.slack.rate_limits.clear()
    running.slack.inject_fault("chat.postMessage", status=503)
    running.ask("now?")
    [post] = running.posts_after(1)
    assert post.username == "Erik L-bot"


DEMO_HOME = os.environ.get("DOPPELKIT_TEST_DEMO_HOME")


@pytest.mark.skipif(
    not DEMO_HOME, reason="set DOPPELKIT_TEST_DEMO_HOME to a home with the trained demo persona"
)
def test_the_trained_demo_persona_answers(slack: FakeSlack) -> None:
    from doppelkit.builtins.formatters.chat import ChatFormatter
    from doppelkit_lora.engine import build_engine

    assert DEMO_HOME is not None
    context = make_context(Path(DEMO_HOME), persona="erik")
    engine = build_engine(context, ChatFormatter(ChatFormatter.Config(), context))
    bot = Running(Path(DEMO_HOME), slack, engine)
    try:
        root, response = bot.ask("what broke in the deploy?")
        assert response.status == 200
        [post] = bot.posts_after(1, timeout=120)
        assert post.thread_ts == root and post.username.endswith("-bot") and post.text.strip()
        assert "<!" not in post.text and "<@" not in post.text
    finally:
        bot.close()
