"""Slack's Socket Mode on loopback, for tests of an app that connects with an ``xapp-`` token.

Give it to :class:`~doppelkit_slack.testing.FakeSlack` (``socket_mode=``): ``apps.connections.open``
with the app token then answers a ``ws://127.0.0.1:PORT/link?ticket=N`` URL, and slack_sdk's own
``SocketModeClient`` (what Bolt's ``SocketModeHandler`` runs) connects to it::

    socket = FakeSocketMode("xapp-1-test").start()
    with FakeSlack(workspace, socket_mode=socket) as slack:
        handler = SocketModeHandler(app, "xapp-1-test")   # app's client points at slack.url
        handler.connect()
        socket.wait_connected()
        envelope = socket.send_events_api(event_callback_body)
        ack = socket.wait_ack(envelope)                     # the client acks by envelope_id
        socket.disconnect("refresh_requested")              # the client reconnects by itself

The protocol is Slack's: on connect the server sends ``{"type": "hello", ...}``; envelopes are
``{"envelope_id", "type": "events_api" | "slash_commands" | "interactive", "payload",
"accepts_response_payload", "retry_attempt", "retry_reason"}``; the client answers
``{"envelope_id", "payload"?}``. :meth:`disconnect` sends ``{"type": "disconnect", "reason"}``
and closes the socket, as Slack does before it rotates connections. What it records:
:attr:`acks` (envelope ID → the ack and seconds it took), :attr:`connections` (connections
opened), :attr:`tickets` (``apps.connections.open`` answers). An envelope not acked within
``ack_timeout`` can be sent again with :meth:`redeliver` (``retry_attempt`` + 1).

aiohttp serves the WebSocket (imported when the server starts): a test dependency.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Ack", "FakeSocketMode"]


@dataclass(frozen=True)
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None
    seconds: float  # from sending the envelope to receiving its ack
    connection: int  # which connection (1-based) it came over


class FakeSocketMode:
    def __init__(
        self, app_token: str = "xapp-1-fake", *, app_id: str = "A0001", ack_timeout: float = 3.0
    ) -> None:
        self.app_token = app_token
        self.app_id = app_id
        self.ack_timeout = ack_timeout
        self.acks: dict[str, Ack] = {}
        self.sent: dict[str, dict[str, Any]] = {}  # envelope ID → the envelope
        self.connections = 0
        self.tickets = 0
        self._sent_at: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._port = 0
        self._current: Any = None  # the open aiohttp WebSocketResponse
        self._current_number = 0

    # -- lifetime ---------------------------------------------------------------------------

    def start(self) -> FakeSocketMode:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="FakeSocketMode", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Socket Mode server did not start")
        return self

    async def _serve(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with self._lock:
            ws = self._current
        if ws is not None:  # closed first: the runner would wait for it
            asyncio.run_coroutine_threadsafe(ws.close(), loop).result(10)
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- apps.connections.open --------------------------------------------------------------

    def open_connection(self, token: str | None) -> dict[str, Any]:
        """The ``apps.connections.open`` answer for ``token`` (FakeSlack calls this)."""
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        with self._lock:
            self.tickets += 1
            ticket = self.tickets
        return {"ok": True, "url": f"ws://127.0.0.1:{self._port}/link?ticket={ticket}"}

    # -- the socket ---------------------------------------------------------------------------

    async def _link(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._lock:
            self.connections += 1
            number = self.connections
            self._current, self._current_number = ws, number
            self._lock.notify_all()
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "fake-socket-mode", "approximate_connection_time": 3600},
                    "connection_info": {"app_id": self.app_id},
                }
            )
        )
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(message.data)
            except ValueError:
                continue
            envelope_id = data.get("envelope_id") if isinstance(data, dict) else None
            if isinstance(envelope_id, str):
                with self._lock:
                    sent_at = self._sent_at.get(envelope_id, time.monotonic())
                    if envelope_id not in self.acks:  # the first ack counts
                        self.acks[envelope_id] = Ack(
                            envelope_id, data.get("payload"), time.monotonic() - sent_at, number
                        )
                    self._lock.notify_all()
        with self._lock:
            if self._current is ws:
                self._current = None
        return ws

    def wait_connected(self, connections: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``connections`` connections have been opened (and one is open now)."""
        with self._lock:
            if not self._lock.wait_for(
                lambda: self.connections >= connections and self._current is not None, timeout
            ):
                raise TimeoutError(f"{self.connections} connection(s), wanted {connections}")

    def _send(self, message: dict[str, Any]) -> None:
        with self._lock:
            ws = self._current
        if ws is None or self._loop is None:
            raise RuntimeError("no Socket Mode connection is open")
        asyncio.run_coroutine_threadsafe(ws.send_str(json.dumps(message)), self._loop).result(10)

    def send(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
    ) -> str:
        """Send one envelope over the open connection; its envelope ID."""
        envelope_id = envelope_id or f"env-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        with self._lock:
            self.sent[envelope_id] = envelope
            self._sent_at[envelope_id] = time.monotonic()
            self.acks.pop(envelope_id, None)
        self._send(envelope)
        return envelope_id

    def send_events_api(self, body: dict[str, Any], **options: Any) -> str:
        """An ``event_callback`` body (:func:`~doppelkit_slack.testing.events.event_envelope`)."""
        return self.send("events_api", body, **options)

    def send_slash_command(self, payload: dict[str, Any], **options: Any) -> str:
        """A slash command's fields (:func:`~doppelkit_slack.testing.events.slash_command`)."""
        return self.send("slash_commands", payload, **options)

    def send_interactive(self, payload: dict[str, Any], **options: Any) -> str:
        return self.send("interactive", payload, **options)

    def redeliver(self, envelope_id: str, reason: str = "timeout") -> str:
        """Send an envelope again, as Slack does when no ack came in time."""
        envelope = self.sent[envelope_id]
        return self.send(
            envelope["type"],
            envelope["payload"],
            retry_attempt=int(envelope["retry_attempt"]) + 1,
            retry_reason=reason,
            envelope_id=envelope_id,
        )

    def wait_ack(self, envelope_id: str, timeout: float | None = None) -> Ack | None:
        """The envelope's ack, or None when none came within ``timeout`` (``ack_timeout``)."""
        with self._lock:
            self._lock.wait_for(
                lambda: envelope_id in self.acks, self.ack_timeout if timeout is None else timeout
            )
            return self.acks.get(envelope_id)

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, then close the socket (Slack's rotation)."""
        with self._lock:
            ws = self._current
        self._send({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-socket-mode"}})
        if ws is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(ws.close(), self._loop).result(10)
