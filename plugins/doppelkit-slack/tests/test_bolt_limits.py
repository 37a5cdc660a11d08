"""Per-workspace limits: personas, trainings at once, replies per minute — each refused with a
reply that says which limit and what to do; another workspace is not affected.
(Across bot processes sharing a store: test_bolt_jobs.py.)"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from bolt_support import ADMIN, BOT_USER, CHANNEL, TEAM, Bot, replies, start_bot, stop_bot
from test_bolt_commands import FakeSteps, use_steps

from doppelkit.testing.fakes import EchoEngine
from doppelkit_slack.testing import FakeSlack
from doppelkit_slack.testing.events import app_mention


@pytest.fixture
def bot(tmp_path: Path, slack: FakeSlack) -> Iterator[Bot]:
    engine = EchoEngine(versions={(TEAM, "U_ANN"): "v1"})
    made = start_bot(tmp_path, slack, engine, persona="U_ANN", training_limit=1, replies_per_minute=2)
    yield made
    stop_bot(made)


def command(bot: Bot, text: str) -> str:
    response = bot.sender.send_command(text, team=TEAM, user=ADMIN, channel=CHANNEL)
    assert response.status == 200
    return str(response.json()["text"])


def test_trainings_at_once_are_limited_per_workspace(bot: Bot) -> None:
    gate = threading.Event()
    use_steps(bot, FakeSteps(bot.engine, gate=gate))
    assert command(bot, "train <@U_BOB>").startswith("Started training Bob")
    reply = command(bot, "train <@U_AL1>")
    assert reply.startswith("This workspace already has 1 training(s) running (the limit is 1): Bob.")
    assert bot.runtime.parts.store.get(TEAM, "U_AL1") is None
    gate.set()
    bot.runtime.training.join(5)
    assert command(bot, "train <@U_AL1>").startswith("Started training Alex"), "free again once done"
    bot.runtime.training.join(5)


def test_replies_per_minute_are_limited_with_one_notice(bot: Bot) -> None:
    for i in range(5):
        bot.send(
            app_mention(f"<@{BOT_USER}> hi {i}", user="U_BOB", channel=CHANNEL, ts=f"17000000{i:02d}.000100")
        )
    posts = replies(bot, 3)
    answers = [p for p in posts if p.username == "Ann-bot"]
    notices = [p for p in posts if "more than 2 replies in the last minute" in p.text]
    assert len(answers) == 2 and len(notices) == 1, [p.text for p in posts]
    assert notices[0].thread_ts == "1700000002.000100", "the notice is in the first refused thread"


def test_replies_are_limited_while_the_store_is_slow(tmp_path: Path, slack: FakeSlack) -> None:
    """Mentions acked before the store recorded them still count: a slow or write-locked store
    used to let every one of them through (seen on a loaded CI machine)."""
    engine = EchoEngine(versions={(TEAM, "U_ANN"): "v1"})
    made = start_bot(tmp_path, slack, engine, persona="U_ANN", replies_per_minute=2)
    locker = sqlite3.connect(str(made.runtime.parts.home.state / "doppelkit.db"), isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # no job can be recorded: every mention is "unrecorded"
        for i in range(5):
            made.send(
                app_mention(
                    f"<@{BOT_USER}> hi {i}", user="U_BOB", channel=CHANNEL, ts=f"17000000{i:02d}.000100"
                )
            )
        locker.execute("ROLLBACK")
        posts = replies(made, 3)
        answers = [p for p in posts if p.username == "Ann-bot"]
        assert len(answers) == 2 and len(posts) == 3, [p.text for p in posts]
    finally:
        locker.close()
        stop_bot(made)
