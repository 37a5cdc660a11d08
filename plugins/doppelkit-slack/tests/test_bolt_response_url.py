"""Slow slash commands: ``/doppel train`` answers within 3 s and reports its progress through the
command's ``response_url`` (at most 5 uses in 30 minutes), not by guessing a channel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from bolt_support import ADMIN, TEAM, Bot, fake_slack, start_bot, stop_bot, wait_until
from test_bolt_commands import FakeSteps, use_steps

from doppelkit.testing.fakes import EchoEngine
from doppelkit_slack.bolt.respond import LIFETIME_S, MAX_USES, ResponseUrls
from doppelkit_slack.testing import FakeSlack

PROGRESS = [
    "Reading Bob's messages…",
    "Training Bob on 42 examples… this can take a while.",
    "Bob is ready (v1). Mention me to talk to them.",
]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with fake_slack() as fake:
        fake.workspace.joined = set()  # the bot is in no channel: it cannot post progress there
        yield fake


@pytest.fixture
def bot(tmp_path: Path, slack: FakeSlack) -> Iterator[Bot]:
    engine = EchoEngine()
    made = start_bot(tmp_path, slack, engine, persona=None)
    yield made
    stop_bot(made)


def train(bot: Bot, hook: str) -> tuple[str, float]:
    response = bot.sender.send_command(
        "train <@U_BOB>", team=TEAM, user=ADMIN, response_url=bot.slack.response_url(hook)
    )
    assert response.status == 200
    return str(response.json()["text"]), response.elapsed


def test_progress_goes_to_the_response_url_not_a_guessed_channel(bot: Bot) -> None:
    gate = threading.Event()
    use_steps(bot, FakeSteps(bot.engine, gate=gate))
    reply, elapsed = train(bot, "train")
    assert reply.startswith("Started training Bob") and elapsed < 3.0
    gate.set()
    assert wait_until(lambda: len(bot.slack.responses_to("train")) == 3)
    bot.runtime.training.join(5)
    responses = bot.slack.responses_to("train")
    assert [r["text"] for r in responses] == PROGRESS
    assert {r["response_type"] for r in responses} == {"in_channel"}
    assert bot.slack.count("chat.postMessage") == 0, "nothing was posted to a channel the bot is not in"


def test_a_used_up_response_url_falls_back_to_the_channel(bot: Bot) -> None:
    bot.slack.workspace.joined = None  # the bot is in the channel this time
    use_steps(bot, FakeSteps(bot.engine))
    hook = bot.slack.response_url("busy")
    import urllib.request

    for _ in range(MAX_USES - 1):  # someone else used the URL four times already
        urllib.request.urlopen(urllib.request.Request(hook, data=b"{}", method="POST"), timeout=5).read()
    train(bot, "busy")
    assert wait_until(lambda: len(bot.slack.posts) == 2)
    bot.runtime.training.join(5)
    assert [r.get("text") for r in bot.slack.responses_to("busy")][-1] == PROGRESS[0]  # the fifth use
    assert [p.text for p in bot.slack.posts] == PROGRESS[1:]  # Slack refused the sixth: the channel


def test_uses_and_lifetime_are_counted(slack: FakeSlack) -> None:
    now = [1000.0]
    urls = ResponseUrls(clock=lambda: now[0])
    hook = slack.response_url("counted")
    urls.remember(hook)
    assert [urls.send(hook, f"m{i}") for i in range(MAX_USES + 1)] == [True] * MAX_USES + [False]
    assert len(slack.responses_to("counted")) == MAX_USES, "the sixth was never sent"
    late = slack.response_url("late")
    urls.remember(late)
    now[0] += LIFETIME_S + 1
    assert urls.send(late, "too late") is False and slack.responses_to("late") == []
