"""Socket Mode at the handler level: the same Bolt app and listeners, fed envelopes the way
``SocketModeHandler`` feeds them, with no network to Slack (only the fake Web API)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bolt_support import (
    BOT_USER,
    CHANNEL,
    ROOT_TS,
    TEAM,
    TOKEN,
    store_event_message,
    wait_for_posts,
)

from doppelkit.testing.fakes import EchoEngine
from doppelkit.testing.helpers import make_context
from doppelkit_slack.bolt.config import BoltConfig
from doppelkit_slack.bolt.runtime import BoltRuntime, build_runtime
from doppelkit_slack.testing import FakeSlack
from doppelkit_slack.testing.bolt import run_socket_mode_request, wait_idle
from doppelkit_slack.testing.events import app_mention, event_envelope, slash_command


@pytest.fixture
def runtime(tmp_path: Path, slack: FakeSlack) -> Iterator[BoltRuntime]:
    config = BoltConfig(mode="socket", api_url=slack.url, avatar="none", api_retry_backoff=0.01)
    made = build_runtime(
        config,
        make_context(tmp_path / "home", persona="U_ANN"),
        EchoEngine(versions={(TEAM, "U_ANN"): "v1"}),
        bot_token=TOKEN,
        signing_secret=None,  # Socket Mode: no request signing
    )
    yield made
    made.close()


def test_a_socket_mode_mention_is_acked_and_answered_once(runtime: BoltRuntime, slack: FakeSlack) -> None:
    event = app_mention(f"<@{BOT_USER}> hi", user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
    store_event_message(slack, event)
    body = event_envelope(event, team=TEAM, event_id="EvSOCKET")
    assert run_socket_mode_request(runtime.app, body).status == 200
    for attempt in (1, 2):  # Slack's redeliveries over the socket carry retry_attempt
        assert run_socket_mode_request(runtime.app, body, retry_attempt=attempt).status == 200
    wait_idle(runtime)
    [post] = wait_for_posts(slack, 1)
    assert post.thread_ts == ROOT_TS and post.text == f"Ann says: &lt;@{BOT_USER}&gt; hi"


def test_a_socket_mode_slash_command_answers_in_the_ack(runtime: BoltRuntime) -> None:
    response = run_socket_mode_request(runtime.app, slash_command("status", team=TEAM))
    assert response.status == 200
    assert "Answering as: U_ANN" in response.body or "Answering as: Ann" in response.body


class _RecordingSocket:
    def __init__(self) -> None:
        import logging

        self.sent: list[Any] = []
        self.logger = logging.getLogger("test.socket")

    def send_socket_mode_response(self, response: Any) -> None:
        self.sent.append(response)


@pytest.mark.parametrize("spoil", [{"event": [1]}, {"event": "x"}, {"event_user": 5}, {"team_id": 7}])
def test_malformed_socket_mode_envelopes_are_acked_and_dropped(
    runtime: BoltRuntime, slack: FakeSlack, spoil: dict[str, Any]
) -> None:
    from slack_sdk.socket_mode.request import SocketModeRequest

    from doppelkit_slack.bolt.server import socket_mode_handler

    event = app_mention(f"<@{BOT_USER}> hi", user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
    store_event_message(slack, event)
    body = event_envelope(event, team=TEAM)
    if "event_user" in spoil:
        body["event"]["user"] = spoil["event_user"]
    else:
        body.update(spoil)
    handler = socket_mode_handler(runtime.app, "xapp-test")
    socket = _RecordingSocket()
    request = SocketModeRequest(type="events_api", envelope_id="env-bad", payload=body)
    handler.handle(socket, request)  # Bolt alone answers 500 or raises (then no ack: redelivery)
    assert [r.envelope_id for r in socket.sent] == ["env-bad"]
    wait_idle(runtime)
    assert slack.posts == []


def test_well_formed_socket_mode_envelopes_still_reach_bolt(runtime: BoltRuntime, slack: FakeSlack) -> None:
    from slack_sdk.socket_mode.request import SocketModeRequest

    from doppelkit_slack.bolt.server import socket_mode_handler

    event = app_mention(f"<@{BOT_USER}> hi", user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
    store_event_message(slack, event)
    socket = _RecordingSocket()
    request = SocketModeRequest(
        type="events_api", envelope_id="env-ok", payload=event_envelope(event, team=TEAM)
    )
    socket_mode_handler(runtime.app, "xapp-test").handle(socket, request)
    assert [r.envelope_id for r in socket.sent] == ["env-ok"]
    wait_idle(runtime)
    assert len(wait_for_posts(slack, 1)) == 1
