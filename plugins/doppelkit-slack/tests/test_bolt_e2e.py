"""End to end against FakeSlack serving the bundled sample workspace: the real Bolt app over
HTTP, signed events in, posts read back from the fake.

The last test is the issue's "done when": a persona trained by the real pipeline (``doppelkit
persona.user=maya`` on the bundled sample, shrunk to seconds: a tiny base of 32 hidden units
pretrained 5 steps, 4 LoRA steps) served by the real lora engine answers a signed mention with
exactly one threaded reply, and Slack's retries add none.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bolt_support import SECRET, serve_cli, url_after

from doppelkit.interfaces import Engine
from doppelkit.testing.fakes import EchoEngine
from doppelkit.testing.helpers import make_context, run_cli
from doppelkit_lora.testing import SECONDS_TO_TRAIN
from doppelkit_slack.bolt.config import BoltConfig
from doppelkit_slack.bolt.runtime import BoltRuntime, build_runtime
from doppelkit_slack.bolt.server import HttpServer, asgi_app
from doppelkit_slack.sources.export import SAMPLE_PERSONA, SAMPLE_WORKSPACE
from doppelkit_slack.testing import DEFAULT_TOKEN, FakeSlack
from doppelkit_slack.testing.bolt import wait_idle
from doppelkit_slack.testing.events import EventSender, app_mention

# People of the sample workspace (plugins/doppelkit-slack/scripts/make_sample_workspace.py).
TEAM = "T0LANTERN1"
MAYA = SAMPLE_PERSONA
ERIK = "U0ERIK0002"
CHANNEL = "C0GENERAL1"
ASKER = "U0PRIYA003"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.from_export(SAMPLE_WORKSPACE, retry_after=0.05) as fake:
        yield fake


class Running:
    def __init__(
        self, home: Path, slack: FakeSlack, engine: Engine, persona: str = "erik", **config: Any
    ) -> None:
        options = {
            "mode": "http",
            "port": 0,
            "api_url": slack.url,
            "avatar": "none",
            "api_retry_backoff": 0.01,
        }
        settings = BoltConfig(**{**options, **config})
        context = make_context(home, persona=persona)
        self.slack = slack
        self.runtime: BoltRuntime = build_runtime(
            settings, context, engine, bot_token=DEFAULT_TOKEN, signing_secret=SECRET
        )
        self.server = HttpServer(asgi_app(self.runtime, SECRET), "127.0.0.1", 0).start()
        self.sender = EventSender(self.server.url + settings.path, SECRET)
        self.bot_user = slack.workspace.bot.user_id
        self.last_event: dict[str, Any] = {}

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
        self.last_event = event
        return stored["ts"], self.sender.send_event(event, team=TEAM, **kwargs)

    def posts_after(self, n: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.slack.posts) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        wait_idle(self.runtime)
        return list(self.slack.posts)

    def close(self) -> None:
        self.server.stop()
        self.runtime.close()


@pytest.fixture
def running(tmp_path: Path, slack: FakeSlack) -> Iterator[Running]:
    # persona.user=erik resolves through users.list (no adapter under this home): a name, per team.
    bot = Running(tmp_path / "home", slack, EchoEngine(versions={(TEAM, ERIK): "v1"}))
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
    assert (mine.user, mine.is_bot) == (ERIK, False), "the bot's earlier post is the persona's own turn"
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
    wait_idle(running.runtime)
    assert running.slack.count("chat.postMessage", status=429) == 4  # first try + 3 retries, then gave up
    assert running.slack.posts == []
    running.slack.rate_limits.clear()
    running.slack.inject_fault("chat.postMessage", status=503)
    running.ask("now?")
    [post] = running.posts_after(1)
    assert post.username == "Erik L-bot"


# `doppelkit persona.user=maya` on the bundled sample, small enough to train in seconds on a CPU.
TINY_PERSONA = ["persona.user=maya", *SECONDS_TO_TRAIN, "engine.max_new_tokens=12"]


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home where the real pipeline (ingest → train → publish) has trained maya."""
    home = tmp_path_factory.mktemp("trained") / "home"
    # One thread: a model this small gains nothing from more, and on a busy machine torch's
    # spinning worker threads make training several times slower.
    result = run_cli([*TINY_PERSONA, f"home={home}"], env={"OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return home


def lora_engine(home: Path) -> Engine:
    """The engine `doppelkit serve` would build for this home (pipeline.build_engine)."""
    from rich.console import Console

    from doppelkit import pipeline
    from doppelkit.cli import VERB_NEEDS
    from doppelkit.config import compose, validate
    from doppelkit.plugins import build_registries, default_plugin_manager

    manager = default_plugin_manager()
    registries = build_registries(manager)
    cfg = compose([*TINY_PERSONA, f"home={home}", "frontend=bolt"], registries)
    run = validate(cfg, registries, needs=VERB_NEEDS["serve"])
    context = pipeline.build_context(run, manager.hook, Console(file=io.StringIO()), registries)
    return pipeline.build_engine(run, context)


class CountingEngine:
    """The real engine, counting the replies it was asked for."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.replies = 0

    def current_version(self, team: str, user: str) -> str | None:
        return self.engine.current_version(team, user)

    def personas(self) -> list[Any]:
        return self.engine.personas()

    def reply(self, persona: Any, thread: Any, *, bot_user_id: str | None = None) -> list[str]:
        self.replies += 1
        return self.engine.reply(persona, thread, bot_user_id=bot_user_id)

    def stream(self, persona: Any, thread: Any, *, bot_user_id: str | None = None) -> Any:
        return self.engine.stream(persona, thread, bot_user_id=bot_user_id)

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as for training: faster for a tiny model on a busy machine
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_trained_persona_answers_once_in_the_thread(trained_home: Path, slack: FakeSlack) -> None:
    engine = CountingEngine(lora_engine(trained_home))
    bot = Running(trained_home, slack, engine, persona="maya")
    try:
        root, response = bot.ask("what broke in the deploy?", event_id="EvTRAINED")
        assert response.status == 200
        for attempt in (1, 2, 3):  # Slack's retries of the same event
            retry = bot.sender.send_event(bot.last_event, team=TEAM, event_id="EvTRAINED", retry_num=attempt)
            assert retry.status == 200
        posts = bot.posts_after(1, timeout=30)
        assert engine.replies == 1, "one generation for one mention, whatever the retries"
        assert posts and {p.thread_ts for p in posts} == {root}
        assert {p.username for p in posts} == {"maya-bot"}, "answered by the trained persona"
        assert all(p.params["metadata"]["event_payload"]["persona"] == MAYA for p in posts)
        assert "".join(p.text for p in posts).strip()
        assert all("<!" not in p.text and "<@" not in p.text for p in posts)
        assert slack.count("chat.postMessage") == len(posts)
    finally:
        bot.close()


def test_the_command_line_bot_finishes_a_reply_in_progress_when_stopped(
    trained_home: Path, slack: FakeSlack
) -> None:
    """``doppelkit serve frontend=bolt`` with the trained persona answers a mention; SIGTERM
    (docker stop, systemd) while that reply waits out Slack's rate limit lets it go out, then
    the command exits 143 — it used to die on the spot, cutting the reply off."""
    slack.inject_fault("chat.postMessage", "ratelimited", retry_after=2.0)
    process = serve_cli(
        trained_home,
        "frontend.mode=http",
        "frontend.port=0",
        f"frontend.api_url={slack.url}",
        "frontend.avatar=none",
        *TINY_PERSONA,
        env={"SLACK_BOT_TOKEN": DEFAULT_TOKEN, "SLACK_SIGNING_SECRET": SECRET, "OMP_NUM_THREADS": "1"},
    )
    try:
        sender = EventSender(url_after(process, "listening on"), SECRET)
        stored = slack.workspace.add_message(
            CHANNEL, {"user": ASKER, "text": f"<@{slack.workspace.bot.user_id}> what broke in the deploy?"}
        )
        event = app_mention(stored["text"], user=ASKER, channel=CHANNEL, ts=stored["ts"], team=TEAM)
        assert sender.send_event(event, team=TEAM).status == 200
        deadline = time.monotonic() + 60
        while slack.count("chat.postMessage", status=429) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slack.count("chat.postMessage", status=429) == 1, "the reply never reached Slack"
        assert slack.posts == []
        process.terminate()  # while the reply waits out the rate limit
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143 and "terminated (SIGTERM)" in err, err[-3000:]
    [post] = slack.posts
    assert post.username == "maya-bot" and post.thread_ts == stored["ts"] and post.text.strip()
