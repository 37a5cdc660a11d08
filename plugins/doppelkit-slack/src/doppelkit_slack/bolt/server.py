"""Running the bot: the Events API over HTTP (uvicorn + Bolt's ASGI adapter) or Socket Mode."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvicorn
from slack_bolt import App
from slack_bolt.adapter.asgi import SlackRequestHandler
from slack_bolt.adapter.asgi.http_request import AsgiHttpRequest
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from doppelkit.errors import UserError
from doppelkit.home import Home
from doppelkit.interfaces import Engine, RunContext
from doppelkit_slack.bolt.avatar import cached_avatar
from doppelkit_slack.bolt.config import (
    APP_TOKEN_ENV,
    BOT_TOKEN_ENV,
    CLIENT_ID_ENV,
    CLIENT_SECRET_ENV,
    SIGNING_SECRET_ENV,
    BoltConfig,
    required_secret,
)
from doppelkit_slack.bolt.guard import ASGIApp, Receive, RequestGuard, Scope, Send, envelope_problem
from doppelkit_slack.bolt.oauth import OAuthCredentials, storage_failure
from doppelkit_slack.bolt.runtime import BoltRuntime, build_runtime

log = logging.getLogger("doppelkit.bolt")


class ThreadedRequestHandler(SlackRequestHandler):
    """Bolt's ASGI adapter, but ``App.dispatch`` (blocking) runs off the event loop, so one slow
    request (a store write, the first ``auth.test``) never holds up the acks of the others.
    The pool belongs to the runtime, which shuts it down (:meth:`BoltRuntime.close`)."""

    def __init__(self, app: App, path: str, executor: ThreadPoolExecutor) -> None:
        super().__init__(app, path)
        self.executor = executor

    async def dispatch(self, request: AsgiHttpRequest) -> BoltResponse:
        bolt_request = BoltRequest(
            body=await request.get_raw_body(), query=request.query_string, headers=request.get_headers()
        )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.app.dispatch, bolt_request)

    # The OAuth install's two pages: Bolt runs them on the event loop (the callback calls
    # oauth.v2.access, auth.test and the database); here they run on the pool, and a database
    # failure is a page saying so, not a 500.
    async def handle_installation(self, request: AsgiHttpRequest) -> BoltResponse:
        flow = self.app.oauth_flow
        assert flow is not None
        return await self._oauth_page(flow.handle_installation, request, flow.install_path)

    async def handle_callback(self, request: AsgiHttpRequest) -> BoltResponse:
        flow = self.app.oauth_flow
        assert flow is not None
        return await self._oauth_page(flow.handle_callback, request, flow.install_path)

    async def _oauth_page(
        self, handle: Callable[[BoltRequest], BoltResponse], request: AsgiHttpRequest, install_path: str
    ) -> BoltResponse:
        bolt_request = BoltRequest(
            body=await request.get_raw_body(), query=request.query_string, headers=request.get_headers()
        )

        def run() -> BoltResponse:
            try:
                return handle(bolt_request)
            except Exception:
                log.exception("the OAuth install failed")
                return storage_failure(install_path)

        return await asyncio.get_running_loop().run_in_executor(self.executor, run)


class SideRoutes:
    """``GET /healthz`` and the disguised avatars; everything else goes to Bolt.

    ``/healthz`` answers JSON: ``status`` ``ok`` (HTTP 200) or ``degraded`` (HTTP 503, while
    the store fails or has left a reply job unrecorded for seconds), the reply queue (waiting,
    in progress, oldest wait, limits), the store's state, counters (replies, notices, busy,
    expired, failed, jobs recorded late, store errors) and the last replies given up with
    Slack's error code."""

    def __init__(self, app: ASGIApp, home: Home, health: Callable[[], dict[str, Any]] | None = None) -> None:
        self.app = app
        self.home = home
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET":
            path = str(scope.get("path", ""))
            if path == "/healthz":
                report = self.health() if self.health else {}
                ok = report.get("status", "ok") == "ok"
                body = json.dumps({"status": "ok", **report}).encode()
                await _respond(send, 200 if ok else 503, body, b"application/json")
                return
            parts = path.split("/")
            if len(parts) == 4 and parts[1] == "avatars" and parts[3].endswith(".png"):
                found = cached_avatar(self.home, parts[2], parts[3].removesuffix(".png"))
                if found is not None:
                    await _respond(send, 200, found.read_bytes(), b"image/png")
                    return
        await self.app(scope, receive, send)


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await _respond(send, 404, b"not found", b"text/plain")


SOCKET_DOWN_GRACE_S = 10.0  # a reconnect (Slack asks for one every few hours) is not an outage


class SocketModeHealth:
    """What ``/healthz`` says in Socket Mode: the reply jobs' health and the WebSocket's.

    slack_sdk's client reconnects by itself; a connection down longer than
    :data:`SOCKET_DOWN_GRACE_S` (or never up) makes the status ``degraded`` (HTTP 503), so a
    supervisor can restart a bot that stopped hearing from Slack. :meth:`watch` looks at the
    connection every second, so a drop is timed from when it happened, not from the next poll.
    """

    def __init__(
        self,
        jobs_health: Callable[[], dict[str, Any]],
        is_connected: Callable[[], bool],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jobs_health = jobs_health
        self.is_connected = is_connected
        self.clock = clock
        self._down_since: float | None = clock()  # not connected yet
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def observe(self) -> float | None:
        """Look at the connection now; seconds it has been down, or None while connected."""
        connected = self.is_connected()
        with self._lock:
            now = self.clock()
            if connected:
                self._down_since = None
                return None
            if self._down_since is None:
                self._down_since = now
            return now - self._down_since

    def watch(self, every_s: float = 1.0) -> SocketModeHealth:
        def run() -> None:
            while not self._stop.wait(every_s):
                self.observe()

        threading.Thread(target=run, name="doppel-socket-health", daemon=True).start()
        return self

    def close(self) -> None:
        self._stop.set()

    def __call__(self) -> dict[str, Any]:
        report = dict(self.jobs_health())
        down_s = self.observe()
        if down_s is None:
            report["socket_mode"] = "connected"
            return report
        report["socket_mode"] = f"disconnected for {down_s:.0f} s"
        if down_s > SOCKET_DOWN_GRACE_S:
            report["status"] = "degraded"
        return report


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def asgi_app(runtime: BoltRuntime, signing_secret: str, clock: Callable[[], float] = time.time) -> ASGIApp:
    config = runtime.config
    bolt = ThreadedRequestHandler(runtime.app, config.path, runtime.dispatch_pool)
    return RequestGuard(
        SideRoutes(bolt, runtime.parts.home, runtime.parts.replier.jobs.health),  # type: ignore[arg-type]  # Bolt's narrower ASGI types
        signing_secret=signing_secret,
        path=config.path,
        max_body_bytes=config.max_body_bytes,
        clock=clock,
    )


class BoltWebApp:
    """The bot as an ASGI application for a host that serves it (a serverless web endpoint):
    the same guard, routes and Bolt app as ``frontend.mode=http``, without uvicorn."""

    def __init__(self, runtime: BoltRuntime, signing_secret: str) -> None:
        self.runtime = runtime
        self.app = asgi_app(runtime, signing_secret)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def close(self) -> None:
        self.runtime.close(wait=False)


def web_app(config: BoltConfig, context: RunContext, engine: Engine) -> BoltWebApp:
    """:meth:`BoltFrontend.asgi_app`: HTTP mode's app, whatever ``frontend.mode`` says (a web
    endpoint *is* HTTP); reads ``SLACK_SIGNING_SECRET`` and ``SLACK_BOT_TOKEN`` (or, with
    ``frontend.oauth``, ``SLACK_CLIENT_ID`` and ``SLACK_CLIENT_SECRET``)."""
    bot_token, oauth = bot_credentials(config)
    signing_secret = required_secret(SIGNING_SECRET_ENV, "a web endpoint verifies every request with it")
    runtime = build_runtime(
        config, context, engine, bot_token=bot_token, signing_secret=signing_secret, oauth=oauth
    )
    return BoltWebApp(runtime, signing_secret)


def bot_credentials(config: BoltConfig) -> tuple[str | None, OAuthCredentials | None]:
    """The one bot token, or (``frontend.oauth``) the app's client ID and secret: each
    workspace's token then comes from its install."""
    if not config.oauth:
        token = required_secret(BOT_TOKEN_ENV, "the bot needs its xoxb- token to read threads and post")
        return token, None
    if config.mode != "http":
        raise UserError(
            "frontend.oauth=true needs frontend.mode=http: Socket Mode serves one workspace (its "
            "SLACK_BOT_TOKEN and SLACK_APP_TOKEN). Set frontend.mode=http, or frontend.oauth=false. "
            "See docs/multi-workspace.md."
        )
    why = "the OAuth install (frontend.oauth=true) needs the app's credentials (Basic Information)"
    return None, OAuthCredentials(
        required_secret(CLIENT_ID_ENV, why), required_secret(CLIENT_SECRET_ENV, why)
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound and listening on host:port; a :class:`UserError` saying what to do if not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections queue from now on, even before uvicorn takes over
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            why = (
                f"port {port} is already in use (another bot or server?). Stop that process, or pick "
                "another port with frontend.port=… (frontend.port=0 picks a free one)"
            )
        elif exc.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need privileges): use frontend.port=1024 or higher"
        else:
            why = (
                f"{exc.strerror or exc} — check frontend.host (an address of this machine) and frontend.port"
            )
        raise UserError(f"The bolt frontend cannot listen on {where}: {why}.") from None
    return sock


class HttpServer:
    """uvicorn on a socket bound up front, so port 0 works and the real port is known at once."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.socket = listening_socket(host, port)
        self.host, self.port = host, int(self.socket.getsockname()[1])
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> None:
        """Serve until interrupted (uvicorn handles SIGINT/SIGTERM in the main thread)."""
        self.server.run(sockets=[self.socket])

    def start(self, timeout: float = 10.0) -> HttpServer:
        """Serve from a background thread (tests, benchmarks)."""
        self._thread = threading.Thread(target=self.run, name="doppel-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True  # do not wait for idle keep-alive connections
        if self._thread is not None:
            self._thread.join(10)
        self.socket.close()


def socket_mode_handler(app: App, app_token: str | None) -> Any:
    """Bolt's Socket Mode handler, but an envelope whose shape Bolt would crash on (the HTTP
    guard's :func:`~.guard.envelope_problem`) is acknowledged — so Slack does not redeliver
    it — and dropped before Bolt sees it."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.socket_mode.builtin.client import SocketModeClient
    from slack_sdk.socket_mode.request import SocketModeRequest
    from slack_sdk.socket_mode.response import SocketModeResponse

    class CheckedSocketModeHandler(SocketModeHandler):
        def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
            payload = req.payload
            problem = envelope_problem(payload) if isinstance(payload, dict) else "payload is not an object"
            if problem is not None:
                log.warning("acknowledged and dropped a malformed Socket Mode envelope: %s", problem)
                client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
                return
            super().handle(client, req)

    return CheckedSocketModeHandler(app, app_token)


def serve(config: BoltConfig, context: RunContext, engine: Engine) -> None:
    """``doppelkit serve frontend=bolt``: blocks until interrupted."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    verbose = context.settings.verbose
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    bot_token, oauth = bot_credentials(config)
    if config.mode == "http" and config.health_port is not None:
        raise UserError(
            "frontend.health_port is for Socket Mode; in HTTP mode GET /healthz is served on "
            "frontend.port with the events. Remove frontend.health_port."
        )
    if config.mode == "http":
        signing_secret = required_secret(SIGNING_SECRET_ENV, "HTTP mode verifies every request with it")
        app_token = None
    else:
        signing_secret = None
        app_token = required_secret(APP_TOKEN_ENV, "Socket Mode connects with an xapp- app-level token")
    runtime = build_runtime(
        config, context, engine, bot_token=bot_token, signing_secret=signing_secret, oauth=oauth
    )
    who = runtime.chooser.command_line
    persona_note = f" (persona: {who.name or who.query})" if who else ""

    def announce(text: str) -> None:  # URLs whole, nothing read as markup
        context.console.print(text, soft_wrap=True, markup=False, highlight=False)

    try:
        if config.mode == "http":
            assert signing_secret is not None
            server = HttpServer(asgi_app(runtime, signing_secret), config.host, config.port)
            install = f"; installs at {server.url}{config.install_path}" if oauth else ""
            announce(f"doppelkit bolt: listening on {server.url}{config.path}{persona_note}{install}")
            server.run()
        else:
            _serve_socket_mode(config, runtime, app_token, announce, persona_note)
    finally:
        runtime.close(wait=False)


def _serve_socket_mode(
    config: BoltConfig,
    runtime: BoltRuntime,
    app_token: str | None,
    announce: Callable[[str], None],
    persona_note: str,
) -> None:
    """Socket Mode until interrupted, with ``GET /healthz`` on ``frontend.health_port`` if set."""
    handler = socket_mode_handler(runtime.app, app_token)
    health: SocketModeHealth | None = None
    health_server: HttpServer | None = None
    try:
        if config.health_port is not None:
            health = SocketModeHealth(runtime.parts.replier.jobs.health, handler.client.is_connected)
            routes = SideRoutes(not_found, runtime.parts.home, health.watch())
            health_server = HttpServer(routes, config.host, config.health_port).start()
            persona_note += f"; health at {health_server.url}/healthz"
        announce(f"doppelkit bolt: connecting to Slack in Socket Mode{persona_note}")
        handler.start()
    finally:
        handler.close()
        if health_server is not None:
            health_server.stop()
        if health is not None:
            health.close()
