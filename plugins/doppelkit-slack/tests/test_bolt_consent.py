"""Consent (``frontend.consent=ask``, the default): ``/doppel train @someone`` asks that person
in a DM with Approve / Decline buttons; training starts only after they approve; the decision
is stored with who and when; a decline or their own ``/doppel forget me`` removes everything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bolt_support import ADMIN, TEAM, Bot, database, start_bot, stop_bot, wait_until
from test_bolt_commands import FakeSteps, use_steps

from doppelkit.testing.fakes import EchoEngine
from doppelkit_slack.bolt.consent import APPROVE, APPROVED, DECLINE, DECLINED, REVOKED
from doppelkit_slack.store import TRAINED
from doppelkit_slack.testing import FakeSlack
from doppelkit_slack.testing.events import block_action

BOB_DM = "D0001"  # the app DM with U_BOB in the test workspace


@pytest.fixture
def engine() -> EchoEngine:
    return EchoEngine()


@pytest.fixture(params=["sqlite", "postgres"])
def bot(
    request: pytest.FixtureRequest, tmp_path: Path, slack: FakeSlack, engine: EchoEngine
) -> Iterator[Bot]:
    with database(request.param) as url:
        made = start_bot(tmp_path, slack, engine, persona=None, consent="ask", store_url=url)
        use_steps(made, FakeSteps(engine))
        yield made
        stop_bot(made)


def command(bot: Bot, text: str, user: str = ADMIN) -> str:
    response = bot.sender.send_command(text, team=TEAM, user=user, channel="C0001")
    assert response.status == 200, response.text
    return str(response.json()["text"])


def the_request(bot: Bot) -> dict[str, Any]:
    """The DM the bot sent Bob, with its buttons."""
    [dm] = [p for p in bot.slack.posts if p.channel == BOB_DM]
    return dm.params


def press(bot: Bot, action: str, user: str, hook: str, team: str = TEAM) -> int:
    buttons = the_request(bot)["blocks"]
    blocks = buttons if isinstance(buttons, list) else json.loads(buttons)
    [value] = {e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]}
    payload = block_action(
        action, value, user=user, team=team, channel=BOB_DM, response_url=bot.slack.response_url(hook)
    )
    return bot.sender.send_interaction(payload).status


def consent_state(bot: Bot, user: str = "U_BOB") -> Any:
    return bot.runtime.parts.commands.consent.consents.get(TEAM, user)  # type: ignore[union-attr]


def test_training_someone_asks_them_first_and_starts_on_approval(bot: Bot, engine: EchoEngine) -> None:
    reply = command(bot, "train <@U_BOB>")
    assert reply.startswith("I asked Bob for consent in a direct message")
    request = the_request(bot)
    assert request["text"].startswith("Olga asks") and "Approve" in json.dumps(request["blocks"])
    assert "<@" not in request["text"] + json.dumps(request["blocks"]), "the bot pings nobody"
    assert bot.runtime.parts.store.get(TEAM, "U_BOB") is None, "nothing starts before the answer"
    assert consent_state(bot).state == "pending"
    assert press(bot, APPROVE, "U_BOB", "bob") == 200
    store = bot.runtime.parts.store
    assert wait_until(lambda: (r := store.get(TEAM, "U_BOB")) is not None and r.state == TRAINED)
    [answer] = bot.slack.responses_to("bob")
    assert answer["text"].startswith("You approved") and answer["replace_original"] is True
    record = consent_state(bot)
    assert record.state == APPROVED and record.decided_by == "U_BOB" and record.requested_by == ADMIN
    assert record.decided_at is not None
    bot.runtime.training.join(5)
    assert command(bot, "train <@U_BOB>").startswith("Started training Bob (they approved on")
    assert len([p for p in bot.slack.posts if p.channel == BOB_DM]) == 1, "asked once"


def test_a_button_pressed_by_someone_else_does_nothing(bot: Bot) -> None:
    command(bot, "train <@U_BOB>")
    assert press(bot, APPROVE, ADMIN, "admin") == 200
    [answer] = bot.slack.responses_to("admin")
    assert answer["text"] == "Only Bob can answer this request." and answer["response_type"] == "ephemeral"
    assert consent_state(bot).state == "pending" and bot.runtime.parts.store.get(TEAM, "U_BOB") is None


def test_a_button_pressed_twice_decides_once(bot: Bot, engine: EchoEngine) -> None:
    command(bot, "train <@U_BOB>")
    assert press(bot, APPROVE, "U_BOB", "first") == 200
    assert press(bot, APPROVE, "U_BOB", "second") == 200
    assert press(bot, DECLINE, "U_BOB", "third") == 200
    bot.runtime.training.join(5)
    assert bot.slack.responses_to("second")[0]["text"] == "You already answered this request (approved)."
    assert bot.slack.responses_to("third")[0]["text"].startswith("You already answered")
    assert bot.runtime.training.steps().trained == ["U_BOB"]  # type: ignore[attr-defined]  # one run


def test_a_press_from_another_workspace_is_refused(bot: Bot) -> None:
    command(bot, "train <@U_BOB>")
    assert press(bot, APPROVE, "U_BOB", "elsewhere", team="T0002") == 200
    assert bot.slack.responses_to("elsewhere")[0]["text"] == "This request is not valid here."
    assert consent_state(bot).state == "pending"


def test_declining_deletes_what_there_was_and_trains_nothing(bot: Bot, engine: EchoEngine) -> None:
    home = bot.runtime.parts.home
    old = home.datasets(TEAM, "U_BOB") / "dataset.jsonl"  # from an earlier, separate ingest
    old.parent.mkdir(parents=True)
    old.write_text("{}\n")
    command(bot, "train <@U_BOB>")
    assert press(bot, DECLINE, "U_BOB", "no") == 200
    assert bot.slack.responses_to("no")[0]["text"].startswith("You declined")
    assert not old.exists() and bot.runtime.parts.store.get(TEAM, "U_BOB") is None
    record = consent_state(bot)
    assert record.state == DECLINED and record.decided_by == "U_BOB"
    assert wait_until(lambda: any("Bob declined" in p.text for p in bot.slack.posts))
    assert command(bot, "train <@U_BOB>").startswith("I asked Bob"), "asked again, not trained"


def test_forget_me_removes_everything_and_revokes(bot: Bot, engine: EchoEngine) -> None:
    command(bot, "train <@U_BOB>")
    press(bot, APPROVE, "U_BOB", "yes")
    store = bot.runtime.parts.store
    assert wait_until(lambda: (r := store.get(TEAM, "U_BOB")) is not None and r.state == TRAINED)
    bot.runtime.training.join(5)
    adapter = bot.runtime.parts.home.adapters(TEAM, "U_BOB") / "v1" / "adapter_model.safetensors"
    adapter.parent.mkdir(parents=True)
    adapter.write_text("x")
    assert command(bot, "forget me", user="U_BOB").startswith("Forgot Bob")
    assert not adapter.exists() and store.get(TEAM, "U_BOB") is None
    assert consent_state(bot).state == REVOKED
    assert command(bot, "train <@U_BOB>").startswith("I asked Bob"), "consent is needed again"


def test_stop_withdraws_like_forget_me(bot: Bot) -> None:
    command(bot, "train <@U_BOB>")
    press(bot, APPROVE, "U_BOB", "ok")
    bot.runtime.training.join(5)
    assert command(bot, "stop", user="U_BOB").startswith("Forgot Bob")
    assert consent_state(bot).state == REVOKED and bot.runtime.parts.store.get(TEAM, "U_BOB") is None
    assert command(bot, "stop Ann", user="U_BOB").startswith("`/doppel stop` is about you only")


def test_training_oneself_is_consent(bot: Bot) -> None:
    assert command(bot, "train <@U_BOB>", user="U_BOB").startswith("Started training Bob (you asked")
    assert consent_state(bot).state == APPROVED and [p for p in bot.slack.posts if p.channel == BOB_DM] == []


def test_consent_none_says_it_was_not_asked(tmp_path: Path, slack: FakeSlack, engine: EchoEngine) -> None:
    bot = start_bot(tmp_path, slack, engine, persona=None, consent="none")
    try:
        use_steps(bot, FakeSteps(engine))
        assert "Consent was not asked (frontend.consent=none)" in command(bot, "train <@U_BOB>")
    finally:
        stop_bot(bot)


def test_a_replayed_signed_button_press_runs_once(bot: Bot) -> None:
    import time
    import urllib.parse

    command(bot, "train <@U_BOB>")
    buttons = the_request(bot)["blocks"]
    blocks = buttons if isinstance(buttons, list) else json.loads(buttons)
    [value] = {e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]}
    payload = block_action(
        DECLINE, value, user="U_BOB", team=TEAM, channel=BOB_DM, response_url=bot.slack.response_url("bob")
    )
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    stamp, form = str(int(time.time())), "application/x-www-form-urlencoded"
    assert bot.sender.post(body, content_type=form, timestamp=stamp).status == 200
    assert wait_until(lambda: len(bot.slack.responses_to("bob")) == 1)
    replayed = bot.sender.post(body, content_type=form, timestamp=stamp)  # the same signed request
    assert replayed.status == 200 and replayed.body == b""
    time.sleep(0.3)
    assert len(bot.slack.responses_to("bob")) == 1, "the replay was not run again"
    assert consent_state(bot).state == DECLINED
