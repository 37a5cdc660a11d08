"""The real command line: ``doppelkit serve frontend=bolt frontend.mode=http …`` in a subprocess,
driven with signed events against a fake Web API (as an operator's smoke test would)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from bolt_support import (
    BOT_USER,
    CHANNEL,
    SECRET,
    TEAM,
    TOKEN,
    serve_cli,
    store_event_message,
    url_after,
    wait_for_posts,
)

from doppelkit.errors import UserError
from doppelkit.testing.fakes import EchoEngine
from doppelkit.testing.helpers import make_context, run_cli
from doppelkit_slack.bolt import BoltFrontend
from doppelkit_slack.bolt.config import BoltConfig
from doppelkit_slack.bolt.server import listening_socket
from doppelkit_slack.testing import FakeSlack
from doppelkit_slack.testing.events import EventSender, app_mention


def test_http_mode_from_the_command_line(tmp_path: Path, slack: FakeSlack) -> None:
    process = serve_cli(
        tmp_path / "home",
        "frontend.mode=http",
        "frontend.port=0",
        f"frontend.api_url={slack.url}",
        "persona.user=U_ANN",
        env={"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET},
    )
    try:
        url = url_after(process, "listening on")
        sender = EventSender(url, SECRET)
        event = app_mention(
            f"<@{BOT_USER}> hi", user="U_BOB", channel=CHANNEL, ts="1700000000.000100", team=TEAM
        )
        store_event_message(slack, event)
        assert sender.send_event(event, team=TEAM).status == 200
        assert sender.send_event(event, team=TEAM, signature="v0=" + "f" * 64).status == 401
        [post] = wait_for_posts(slack, 1, timeout=20)
        # No adapter under this home: the persona exists but says it is untrained (not silence).
        assert post.thread_ts == "1700000000.000100" and "no trained model yet" in post.text
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode == 143 and "terminated (SIGTERM)" in err, err[-2000:]
    assert TOKEN not in err and SECRET not in err


@pytest.mark.parametrize(
    ("mode", "missing"),
    [("http", "SLACK_SIGNING_SECRET"), ("http", "SLACK_BOT_TOKEN"), ("socket", "SLACK_APP_TOKEN")],
)
def test_missing_secrets_are_a_clear_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, missing: str
) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.setenv(name, "secret-value")
    monkeypatch.setenv(missing, "")
    frontend = BoltFrontend(BoltConfig(mode=mode), make_context(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(UserError, match=f"{missing} is not set") as raised:
        frontend.serve(EchoEngine())
    assert "secret-value" not in str(raised.value)


def test_a_busy_port_is_a_usage_error_naming_host_and_port(tmp_path: Path, slack: FakeSlack) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            [
                "serve",
                "frontend=bolt",
                "frontend.mode=http",
                f"frontend.port={port}",
                f"frontend.api_url={slack.url}",
                "persona.user=U_ANN",
            ],
            env={
                "DOPPELKIT_HOME": str(tmp_path / "home"),
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_SIGNING_SECRET": SECRET,
            },
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert f"127.0.0.1:{port}" in message and "already in use" in message and "frontend.port" in message


def test_a_failed_bind_closes_its_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[socket.socket] = []

    class Tracked(socket.socket):
        def close(self) -> None:
            closed.append(self)
            super().close()

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setattr(socket, "socket", Tracked)
        with pytest.raises(UserError, match="cannot listen on 127.0.0.1"):
            listening_socket("127.0.0.1", busy.getsockname()[1])
    assert len(closed) == 1 and closed[0].fileno() == -1


@pytest.mark.parametrize(
    ("home", "store_url"),
    [
        ("/proc/doppelkit-home", None),  # a read-only home (read-only even for root)
        (None, "sqlite:////proc/doppelkit.db"),  # an unwritable store
    ],
)
def test_an_unwritable_store_or_home_is_one_line_and_exit_2(
    tmp_path: Path, slack: FakeSlack, home: str | None, store_url: str | None
) -> None:
    args = [
        "serve",
        "frontend=bolt",
        "frontend.mode=http",
        "frontend.port=0",
        f"frontend.api_url={slack.url}",
    ]
    if store_url:
        args.append(f"frontend.store_url={store_url}")
    result = run_cli(
        [*args, "persona.user=U_ANN"],
        env={
            "DOPPELKIT_HOME": home or str(tmp_path / "home"),
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
        },
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "store cannot be opened for writing" in line
    assert ("frontend.store_url" if store_url else home) in line


def test_oauth_with_socket_mode_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli(
        ["serve", "frontend=bolt", "frontend.oauth=true", f"home={tmp_path / 'home'}"],
        env={"SLACK_CLIENT_ID": "1111.2222", "SLACK_CLIENT_SECRET": "s3cret", "SLACK_APP_TOKEN": "xapp-1"},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Socket Mode serves one workspace" in lines[0], result.stderr
    assert "s3cret" not in result.stderr


def test_oauth_install_page_from_the_command_line(tmp_path: Path, slack: FakeSlack) -> None:
    from doppelkit_slack.testing import Browser

    process = serve_cli(
        tmp_path / "home",
        "frontend.mode=http",
        "frontend.port=0",
        "frontend.oauth=true",
        f"frontend.api_url={slack.url}",
        env={"SLACK_CLIENT_ID": "1111.2222", "SLACK_CLIENT_SECRET": "s3cret", "SLACK_SIGNING_SECRET": SECRET},
    )
    try:
        install = url_after(process, "installs at")
        browser = Browser()
        page = browser.get(install)
        assert page.status == 200 and "client_id=1111.2222" in browser.install_link(page)
        assert "slack-app-oauth-state" in browser.cookies
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert "s3cret" not in err
