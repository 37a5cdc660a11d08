"""The bot hosted as a web application (``WebFrontend``: what ``+backend=modal`` serves), and
``/doppel train`` started through a backend that runs steps detached."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from bolt_support import (
    ADMIN,
    BOT_USER,
    CHANNEL,
    ROOT_TS,
    SECRET,
    TEAM,
    TOKEN,
    store_event_message,
    wait_until,
)
from pydantic import BaseModel, ConfigDict

from doppelkit.config import RunConfig, Selection
from doppelkit.errors import UserError
from doppelkit.interfaces import DetachingBackend, WebFrontend
from doppelkit.testing.fakes import EchoEngine
from doppelkit.testing.helpers import make_context
from doppelkit_slack.bolt import BoltFrontend
from doppelkit_slack.bolt.config import BoltConfig
from doppelkit_slack.bolt.runtime import build_runtime
from doppelkit_slack.bolt.server import HttpServer
from doppelkit_slack.bolt.training import train_detached
from doppelkit_slack.store import FAILED, SCRAPING, PersonaStore
from doppelkit_slack.testing import EventSender, FakeSlack, app_mention


def test_the_bot_is_a_web_frontend_that_answers_each_mention_once(
    tmp_path: Path, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "home", persona="U_ANN")
    frontend = BoltFrontend(BoltConfig(api_url=slack.url, avatar="none", api_retry_backoff=0.01), context)
    assert isinstance(frontend, WebFrontend)
    frontend.prepare()
    engine = EchoEngine(versions={(TEAM, "U_ANN"): "v1"})
    with pytest.raises(UserError, match="SLACK_BOT_TOKEN"):
        frontend.asgi_app(engine)
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    app = frontend.asgi_app(engine)  # socket mode configured: a web endpoint is HTTP anyway
    server = HttpServer(app, "127.0.0.1", 0).start()
    try:
        sender = EventSender(server.url + "/slack/events", SECRET)
        event = app_mention(f"<@{BOT_USER}> hi", user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
        store_event_message(slack, event)
        assert sender.send_event(event, team=TEAM, event_id="EvHOSTED").status == 200
        assert sender.send_event(event, team=TEAM, event_id="EvHOSTED", retry_num=1).status == 200
        assert wait_until(lambda: len(slack.posts) >= 1)
        time.sleep(0.3)
        [post] = slack.posts
        assert post.text.startswith("Ann says: ") and "<@" not in post.text
        assert post.username == "Ann-bot" and len(engine.calls) == 1
        unsigned = EventSender(server.url + "/slack/events", "wrong-secret").send_event(event, team=TEAM)
        assert unsigned.status == 401
    finally:
        server.stop()
        app.close()
    assert app.runtime.dispatch_pool._shutdown


@dataclass
class Detaching:
    """A backend that records the steps it was asked to start detached."""

    name: ClassVar[str] = "detaching"
    spawned: ClassVar[list[tuple[Callable[..., Any], tuple[Any, ...]]]] = []
    fail: ClassVar[bool] = False
    config: Any = None
    context: Any = None
    device: str | None = field(default=None)

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def run(self, step: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return step(*args, **kwargs)

    def spawn(self, step: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if Detaching.fail:
            raise ConnectionError("the app is not deployed")
        Detaching.spawned.append((step, args))


def detached_bot(tmp_path: Path, slack: FakeSlack) -> tuple[Any, PersonaStore]:
    context = make_context(tmp_path / "home")
    selection = Selection("backend", "detaching", Detaching, Detaching.Config(), "test")
    context.run = RunConfig(settings=context.settings, selections={"backend": selection})
    assert isinstance(Detaching(), DetachingBackend)
    store = PersonaStore(f"sqlite:///{tmp_path / 'store.db'}")
    store.create_schema()
    store.begin_training(TEAM, "U_BOB", "Bob")  # a run in progress elsewhere when the bot starts
    config = BoltConfig(mode="http", api_url=slack.url, avatar="none", consent="none")
    runtime = build_runtime(
        config, context, EchoEngine(), bot_token=TOKEN, signing_secret=SECRET, store=store
    )
    return runtime, store


def test_train_starts_the_detached_step_and_acks_at_once(tmp_path: Path, slack: FakeSlack) -> None:
    Detaching.spawned.clear()
    Detaching.fail = False
    runtime, store = detached_bot(tmp_path, slack)
    try:
        assert runtime.training.detached
        record = store.get(TEAM, "U_BOB")
        assert record is not None and record.state == SCRAPING, (
            "not failed: it may still be running elsewhere"
        )
        reply = runtime.parts.commands.handle("train <@U_ANN>", _invocation())
        assert reply.startswith("Started training Ann")
        [(step, args)] = Detaching.spawned
        assert step is train_detached
        data, team, channel, user = args
        assert (team, channel, user["id"]) == (TEAM, CHANNEL, "U_ANN") and data["home"] == str(
            tmp_path / "home"
        )
        assert store.get(TEAM, "U_ANN").state == SCRAPING  # type: ignore[union-attr]
        assert runtime.training.threads == [], "nothing runs in the bot's process"
    finally:
        runtime.close()


def test_a_detached_start_that_fails_is_reported_and_frees_the_persona(
    tmp_path: Path, slack: FakeSlack
) -> None:
    Detaching.fail = True
    runtime, store = detached_bot(tmp_path, slack)
    try:
        reply = runtime.parts.commands.handle("train <@U_ANN>", _invocation())
        assert reply.startswith("Sorry, could not start training: ConnectionError: the app is not deployed")
        record = store.get(TEAM, "U_ANN")
        assert record is not None and record.state == FAILED
        Detaching.fail = False
        assert runtime.parts.commands.handle("train <@U_ANN>", _invocation()).startswith(
            "Started training Ann"
        )
    finally:
        Detaching.fail = False
        runtime.close()


def _invocation() -> Any:
    from doppelkit_slack.bolt.commands import Invocation

    return Invocation(team=TEAM, channel=CHANNEL, user_id=ADMIN)
