"""A thin ASGI guard in front of Bolt: malformed or unsigned requests get a 4xx, never a 5xx.

Bolt's adapters answer 500 to a non-numeric timestamp or an unparseable body (Slack then
retries) and read bodies of any size. The guard checks, in order, and stops at the first
failure: method (405), content type (415), size (413, capped while streaming), timestamp
present and numeric (400/401) and fresh within ±300 s (401), signature (401), body parses
as the content type says (400), and its envelope has the shape Bolt reads without crashing
(400; :func:`envelope_problem`). Only then does the buffered body go on to Bolt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_CLOCK_SKEW_S = 300
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class _FixedClock:
    """slack_sdk's ``Clock`` shape, over any ``() -> float``."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        signing_secret: str,
        path: str,
        max_body_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.verifier = SignatureVerifier(signing_secret, clock=_FixedClock(clock))  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        try:
            body = await self.check(scope, receive)
        except Rejected as rejected:
            await _plain_response(send, rejected.status, rejected.reason)
            return
        except Exception:  # whatever else a malformed request trips over is still its fault
            await _plain_response(send, 400, "bad request")
            return
        await self.app(scope, _replay(body), send)

    async def check(self, scope: Scope, receive: Receive) -> bytes:
        if scope.get("method") != "POST":
            raise Rejected(405, "only POST")
        headers = _headers(scope)
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type not in (FORM, JSON):
            raise Rejected(415, "content type must be application/json or application/x-www-form-urlencoded")
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Rejected(400, "bad content-length")
            if int(declared) > self.max_body_bytes:
                raise Rejected(413, "body too large")
        body = await self._read(receive)
        timestamp = headers.get("x-slack-request-timestamp")
        signature = headers.get("x-slack-signature")
        if not timestamp or not signature:
            raise Rejected(401, "missing signature")
        if not timestamp.isdigit():
            raise Rejected(400, "non-numeric timestamp")
        if abs(self.clock() - int(timestamp)) > MAX_CLOCK_SKEW_S:
            raise Rejected(401, "stale timestamp")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(400, "body is not UTF-8") from None
        if not self.verifier.is_valid(text, timestamp, signature):
            raise Rejected(401, "invalid signature")
        _parse(body, content_type)
        return body

    async def _read(self, receive: Receive) -> bytes:
        chunks = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Rejected(400, "client disconnected")
            chunks.extend(message.get("body", b""))
            if len(chunks) > self.max_body_bytes:
                raise Rejected(413, "body too large")
            if not message.get("more_body", False):
                return bytes(chunks)


def _parse(body: bytes, content_type: str) -> None:
    """Raise 400 unless the body is what Bolt can parse (a JSON object, or a form) and has the
    shape of an envelope Slack sends."""
    try:
        text = body.decode("utf-8")
        if content_type == JSON:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        else:
            form = parse_qs(text, keep_blank_values=True, strict_parsing=True)
            data = {k: v[0] for k, v in form.items()}
            if "payload" in form:
                data = json.loads(form["payload"][0])
                if not isinstance(data, dict):
                    raise ValueError("payload is not an object")
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise Rejected(400, "unparseable body") from exc
    problem = envelope_problem(data)
    if problem is not None:
        raise Rejected(400, f"malformed envelope: {problem}")


# Fields Bolt and the listeners read as text (IDs, kinds, timestamps), at the top of an envelope
# and inside its event / interaction; ``None`` is allowed (Slack sends ``enterprise_id: null``).
_TEXT_FIELDS = (
    "type", "subtype", "team_id", "user_id", "channel_id", "enterprise_id", "api_app_id", "event_id",
    "ts", "thread_ts", "event_ts", "text", "bot_id", "channel_type", "user_team", "command",
    "trigger_id", "response_url", "callback_id", "token", "app_id",
)  # fmt: skip
# Fields that are an ID, or an object with an ``id`` (``user`` in a user_change, ``team`` in an
# interaction).
_ID_OR_OBJECT_FIELDS = ("team", "user", "channel", "enterprise")
_OBJECT_FIELDS = ("event", "message", "previous_message", "view", "container", "bot_profile")


def envelope_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the shape of a (signed) request body, or None.

    Slack never sends ``"event": [1]`` or ``"user": 5``, but Bolt would crash on them with a
    500 (and Slack retries 5xx): such a body is answered 400 before Bolt sees it."""
    problem = _fields_problem(data, "")
    if problem:
        return problem
    if data.get("type") == "event_callback" and not isinstance(data.get("event"), dict):
        return "event_callback without an event object"
    authorizations = data.get("authorizations")
    if authorizations is not None:
        if not isinstance(authorizations, list) or not all(isinstance(a, dict) for a in authorizations):
            return "authorizations is not a list of objects"
        for authorization in authorizations:
            if problem := _fields_problem(authorization, "authorizations[]."):
                return problem
    for name in _OBJECT_FIELDS:
        inner = data.get(name)
        if inner is None:
            continue
        if not isinstance(inner, dict):
            return f"{name} is not an object"
        if problem := _fields_problem(inner, f"{name}."):
            return problem
    return None


def _fields_problem(data: dict[str, Any], where: str) -> str | None:
    for name in _TEXT_FIELDS:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            return f"{where}{name} is not a string"
    for name in _ID_OR_OBJECT_FIELDS:
        value = data.get(name)
        if value is None or isinstance(value, str):
            continue
        if not isinstance(value, dict) or not isinstance(value.get("id", ""), str):
            return f"{where}{name} is neither an ID nor an object with one"
    return None


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _plain_response(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
