"""Slack's side of the Events API, for tests: signed events and slash commands POSTed to an app.

:class:`FakeSlack <doppelkit_slack.testing.FakeSlack>` plays the Web API the bot calls; this
module plays the other direction, Slack calling the bot::

    sender = EventSender("http://127.0.0.1:PORT/slack/events", signing_secret="secret")
    response = sender.send_event(app_mention("<@UBOT> hi", user="U1", channel="C1", ts="1.000100"))
    assert response.status == 200

Requests are signed like Slack signs them (v0 HMAC-SHA256 over ``v0:{timestamp}:{body}``);
every part can be spoiled (``skew``, ``signature``, ``timestamp``) to test the guard.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_event_ids = itertools.count(1)


def sign(signing_secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def event_envelope(
    event: Mapping[str, Any], *, team: str = "T0001", event_id: str | None = None, app_id: str = "A0001"
) -> dict[str, Any]:
    """An ``event_callback`` body around ``event``, with a fresh ``event_id`` unless given."""
    return {
        "token": "legacy-verification-token",
        "team_id": team,
        "api_app_id": app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_event_ids):08d}",
        "event_time": int(time.time()),
    }


def app_mention(
    text: str, *, user: str, channel: str, ts: str, thread_ts: str | None = None, team: str = "T0001"
) -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel, "team": team}
    if thread_ts:
        event["thread_ts"] = thread_ts
    event["event_ts"] = ts
    return event


def channel_message(
    text: str,
    *,
    user: str,
    channel: str,
    ts: str,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    team: str = "T0001",
) -> dict[str, Any]:
    """A ``message`` event (``channel_type="im"`` for a DM to the bot)."""
    event = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "channel_type": channel_type,
        "team": team,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def slash_command(
    text: str,
    *,
    command: str = "/doppel",
    team: str = "T0001",
    channel: str = "C0001",
    user: str = "U0001",
    response_url: str = "https://hooks.slack.invalid/commands/1",
) -> dict[str, str]:
    return {
        "token": "legacy-verification-token",
        "team_id": team,
        "team_domain": "example",
        "channel_id": channel,
        "channel_name": "general",
        "user_id": user,
        "user_name": "someone",
        "command": command,
        "text": text,
        "api_app_id": "A0001",
        "response_url": response_url,
        "trigger_id": f"trigger.{next(_event_ids)}",
    }


def block_action(
    action_id: str,
    value: str,
    *,
    user: str,
    team: str = "T0001",
    channel: str = "D0001",
    message_ts: str = "1700000000.000100",
    response_url: str = "https://hooks.slack.invalid/actions/1",
) -> dict[str, Any]:
    """A ``block_actions`` payload: ``user`` pressed the button ``action_id`` (with ``value``)."""
    return {
        "type": "block_actions",
        "team": {"id": team, "domain": "example"},
        "user": {"id": user, "team_id": team},
        "api_app_id": "A0001",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "channel": {"id": channel},
        "trigger_id": f"trigger.{next(_event_ids)}",
        "response_url": response_url,
        "actions": [
            {"type": "button", "action_id": action_id, "block_id": "b1", "value": value,
             "action_ts": f"{time.time():.6f}"},
        ],
    }  # fmt: skip


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


class EventSender:
    """POSTs signed requests to a Slack app's request URL (one connection per request)."""

    def __init__(
        self, url: str, signing_secret: str, *, clock: Callable[[], float] = time.time, timeout: float = 10.0
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.path = parsed.path or "/"
        self.signing_secret = signing_secret
        self.clock = clock
        self.timeout = timeout

    def post(
        self,
        body: bytes,
        *,
        content_type: str = "application/json",
        skew: float = 0,
        timestamp: str | None = None,
        signature: str | None = None,
        signed: bool = True,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
    ) -> Response:
        """Send ``body`` signed at now + ``skew`` (or with the given raw header values)."""
        stamp = timestamp if timestamp is not None else str(int(self.clock() + skew))
        sent = {"Content-Type": content_type, **(headers or {})}
        if signed:
            sent["X-Slack-Request-Timestamp"] = stamp
            sent["X-Slack-Signature"] = signature or sign(self.signing_secret, stamp, body)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        started = time.perf_counter()
        try:
            connection.request(method, self.path, body=body, headers=sent)
            raw = connection.getresponse()
            payload = raw.read()
            return Response(
                raw.status,
                payload,
                {k.lower(): v for k, v in raw.getheaders()},
                time.perf_counter() - started,
            )
        finally:
            connection.close()

    def send_event(
        self,
        event: Mapping[str, Any],
        *,
        team: str = "T0001",
        event_id: str | None = None,
        retry_num: int | None = None,
        **options: Any,
    ) -> Response:
        """An ``event_callback``; ``retry_num`` adds Slack's retry headers."""
        body = (
            event
            if event.get("type") == "event_callback"
            else event_envelope(event, team=team, event_id=event_id)
        )
        headers = dict(options.pop("headers", {}) or {})
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return self.post(json.dumps(body).encode(), headers=headers, **options)

    def send_interaction(self, payload: Mapping[str, Any], **options: Any) -> Response:
        """An interaction (a button press: :func:`block_action`), form-encoded as Slack sends it."""
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, content_type="application/x-www-form-urlencoded", **options)

    def send_command(self, text: str, **fields: Any) -> Response:
        """A slash command (form-encoded), ``/doppel`` unless ``command=`` says otherwise."""
        options = {k: fields.pop(k) for k in ("skew", "timestamp", "signature", "signed") if k in fields}
        body = urllib.parse.urlencode(slash_command(text, **fields)).encode()
        return self.post(body, content_type="application/x-www-form-urlencoded", **options)
