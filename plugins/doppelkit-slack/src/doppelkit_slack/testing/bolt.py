"""Driving the ``bolt`` frontend in tests: deliver a Socket Mode envelope, wait for queued work.

The HTTP direction (signed requests to the bot's URL) is :mod:`doppelkit_slack.testing.events`.
slack_bolt is imported when a helper runs, not when this module is imported.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slack_bolt import App
    from slack_bolt.response import BoltResponse

    from doppelkit_slack.bolt.runtime import BoltRuntime


def run_socket_mode_request(
    app: App, payload: dict[str, Any], retry_attempt: int | None = None
) -> BoltResponse:
    """Dispatch one Socket Mode envelope to ``app`` the way Bolt's socket handler does:
    ``payload`` is an ``event_callback`` body or a slash command; ``retry_attempt`` marks a
    redelivery."""
    from slack_bolt.adapter.socket_mode.internals import run_bolt_app
    from slack_sdk.socket_mode.request import SocketModeRequest

    request = SocketModeRequest(
        type="events_api" if payload.get("type") == "event_callback" else "slash_commands",
        envelope_id="env-" + str(payload.get("event_id") or payload.get("trigger_id") or "1"),
        payload=payload,
        retry_attempt=retry_attempt,
    )
    return run_bolt_app(app, request)


def wait_idle(runtime: BoltRuntime, timeout: float = 10.0) -> None:
    """Wait until every reply the bot queued and every workspace deletion it started is done."""
    from concurrent.futures import wait

    deadline = time.monotonic() + timeout
    runtime.parts.replier.wait_idle(timeout)
    wait(runtime.parts.eraser.pending, timeout=max(0.0, deadline - time.monotonic()))
