"""Socket Mode end to end: Bolt's ``SocketModeHandler`` — slack_sdk's real ``SocketModeClient`` —
connects to a local WebSocket server speaking Slack's protocol (``apps.connections.open`` →
``ws://127.0.0.1``, ``hello``, envelopes, acks by ``envelope_id``, a server-initiated
``disconnect``), with the Web API played by FakeSlack."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from bolt_support import (
    BOT_USER,
    CHANNEL,
    SECRET,
    TEAM,
    TOKEN,
    database,
    health,
    serve_cli,
    store_event_message,
    url_after,
    wait_for_posts,
    wait_until,
)

from doppelkit.testing.fakes import EchoEngine
from doppelkit.testing.helpers import make_context, run_cli
from doppelkit_slack.bolt.config import BoltConfig
from doppelkit_slack.bolt.runtime import BoltRuntime, build_runtime
from doppelkit_slack.bolt.server import SOCKET_DOWN_GRACE_S, SocketModeHealth
from doppelkit_slack.testing import FakeSlack, FakeSocketMode
from doppelkit_slack.testing.bolt import wait_idle
from doppelkit_slack.testing.events import app_mention, event_envelope, slash_command

APP_TOKEN = "xapp-1-A0001-test"
ACK_WITHIN_S = 3.0


@pytest.fixture
def socket(slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode(APP_TOKEN) as server:
        slack.socket_mode = server
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def runtime(
    request: pytest.FixtureRequest, tmp_path: Path, slack: FakeSlack, socket: FakeSocketMode
) -> Iterator[BoltRuntime]:
    with database(request.param) as url:
        yield from connected(tmp_path, slack, socket, url)


def connected(
    tmp_path: Path, slack: FakeSlack, socket: FakeSocketMode, url: str | None
) -> Iterator[BoltRuntime]:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    config = BoltConfig(
        mode="socket",
        api_url=slack.url,
        avatar="none",
        api_retry_backoff=0.01,
        consent="none",
        store_url=url,
    )
    made = build_runtime(
        config,
        make_context(tmp_path / "home", persona="U_ANN"),
        EchoEngine(versions={(TEAM, "U_ANN"): "v1"}),
        bot_token=TOKEN,
        signing_secret=None,
    )
    handler = SocketModeHandler(made.app, APP_TOKEN)
    handler.connect()
    socket.wait_connected()
    yield made
    handler.close()
    made.close()


def mention(slack: FakeSlack, ts: str, event_id: str) -> dict[str, object]:
    event = app_mention(f"<@{BOT_USER}> hi {ts}", user="U_BOB", channel=CHANNEL, ts=ts, team=TEAM)
    store_event_message(slack, event)
    return event_envelope(event, team=TEAM, event_id=event_id)


def settle(runtime: BoltRuntime, slack: FakeSlack, n: int) -> list[str]:
    wait_for_posts(slack, n)
    time.sleep(0.3)  # room for a duplicate to show up
    wait_idle(runtime)
    return [p.thread_ts or "" for p in slack.posts]


def test_one_reply_per_mention_and_acks_in_time(
    runtime: BoltRuntime, slack: FakeSlack, socket: FakeSocketMode
) -> None:
    envelopes = [socket.send_events_api(mention(slack, f"170000000{i}.000100", f"EvS{i}")) for i in range(3)]
    for envelope in envelopes:
        ack = socket.wait_ack(envelope)
        assert ack is not None and ack.seconds < ACK_WITHIN_S, f"{envelope} acked in time"
    assert sorted(settle(runtime, slack, 3)) == [f"170000000{i}.000100" for i in range(3)]
    assert slack.count("apps.connections.open") == 1 and socket.connections == 1


def test_a_slash_command_is_answered_in_its_ack(runtime: BoltRuntime, socket: FakeSocketMode) -> None:
    envelope = socket.send_slash_command(slash_command("status", team=TEAM, user="U_BOB"))
    ack = socket.wait_ack(envelope)
    assert ack is not None and ack.payload is not None and ack.seconds < ACK_WITHIN_S
    assert "Answering as: Ann" in str(ack.payload.get("text"))


def test_reconnect_after_disconnect_without_duplicates(
    runtime: BoltRuntime, slack: FakeSlack, socket: FakeSocketMode
) -> None:
    first = socket.send_events_api(mention(slack, "1700000001.000100", "EvRe1"))
    assert socket.wait_ack(first) is not None
    socket.disconnect("refresh_requested")
    socket.wait_connected(connections=2)
    assert slack.count("apps.connections.open") == 2, "the client asked for a fresh URL"
    # Slack redelivers the first envelope on the new connection; the bot must not answer twice.
    again = socket.redeliver(first)
    ack = socket.wait_ack(again)
    assert ack is not None and ack.connection == 2
    second = socket.send_events_api(mention(slack, "1700000002.000100", "EvRe2"))
    assert socket.wait_ack(second) is not None
    assert sorted(settle(runtime, slack, 2)) == ["1700000001.000100", "1700000002.000100"]


def test_a_wrong_app_token_gets_no_connection(slack: FakeSlack, socket: FakeSocketMode) -> None:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(base_url=slack.url)
    with pytest.raises(SlackApiError, match="invalid_auth"):
        client.apps_connections_open(app_token="xapp-1-wrong")
    assert client.apps_connections_open(app_token=APP_TOKEN)["url"].startswith("ws://127.0.0.1:")


# --- /healthz in Socket Mode (frontend.health_port) ----------------------------------------------


def test_the_command_line_bot_in_socket_mode_reports_its_health_and_stops_cleanly(
    tmp_path: Path, slack: FakeSlack, socket: FakeSocketMode
) -> None:
    process = serve_cli(
        tmp_path / "home",
        "frontend.mode=socket",
        "frontend.health_port=0",
        f"frontend.api_url={slack.url}",
        "frontend.avatar=none",
        "persona.user=U_ANN",
        env={"SLACK_BOT_TOKEN": TOKEN, "SLACK_APP_TOKEN": APP_TOKEN},
    )
    try:
        url = url_after(process, "health at")
        assert wait_until(lambda: health(url)[1].get("socket_mode") == "connected", 20)
        status, report = health(url)
        assert status == 200 and report["status"] == "ok" and report["queued"] == 0
        envelope = socket.send_events_api(mention(slack, "1700000001.000100", "EvH1"))
        assert socket.wait_ack(envelope) is not None
        [post] = wait_for_posts(slack, 1, timeout=20)
        assert post.thread_ts == "1700000001.000100"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url.removesuffix("/healthz") + "/slack/events", timeout=5)
        process.terminate()
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143 and "terminated (SIGTERM)" in err, err[-3000:]
    assert TOKEN not in err and APP_TOKEN not in err


def test_a_socket_down_past_the_grace_is_degraded() -> None:
    now = [0.0]
    connected = [False]
    report = SocketModeHealth(lambda: {"status": "ok"}, lambda: connected[0], clock=lambda: now[0])
    assert report() == {"status": "ok", "socket_mode": "disconnected for 0 s"}, "still connecting"
    connected[0] = True
    assert report() == {"status": "ok", "socket_mode": "connected"}
    connected[0] = False
    now[0] = 100.0
    report.observe()  # the watcher sees the drop when it happens, before anyone asks
    now[0] = 105.0
    assert report()["status"] == "ok", "a reconnect is not an outage"
    now[0] = 100.0 + SOCKET_DOWN_GRACE_S + 1
    assert report() == {
        "status": "degraded",
        "socket_mode": f"disconnected for {SOCKET_DOWN_GRACE_S + 1:.0f} s",
    }
    connected[0] = True
    assert report()["status"] == "ok"


def test_health_port_in_http_mode_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli(
        ["serve", "frontend=bolt", "frontend.mode=http", "frontend.health_port=8080", f"home={tmp_path}"],
        env={"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "frontend.health_port is for Socket Mode" in result.stderr and "Traceback" not in result.stderr
