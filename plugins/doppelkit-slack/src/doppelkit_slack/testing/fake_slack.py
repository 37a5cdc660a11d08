"""FakeSlack: a Slack Web API server on loopback, for tests of anything that talks to Slack.

Start it from a Slack export (a ``.zip`` or folder, e.g. the bundled sample workspace) and
point ``slack_sdk.WebClient`` (or any HTTP client) at ``slack.url``::

    from doppelkit_slack.testing import FakeSlack

    with FakeSlack.from_export("export.zip", max_page_size=15) as slack:
        client = WebClient(token=slack.token, base_url=slack.url)
        client.conversations_history(channel="C0GENERAL1")
        assert slack.count("conversations.history") == 1

It serves the methods doppelkit calls, with Slack's response shapes (see
:class:`~doppelkit_slack.testing.fake_workspace.FakeWorkspace` for what each does): ``auth.test``,
``team.info``, ``users.list``/``info``, ``bots.info``, ``conversations.list``/``info``/
``history``/``replies``/``join``/``members``, ``chat.postMessage``/``update``/``delete``
(message ``metadata`` is kept and returned to readers passing ``include_all_metadata``).

What a test can turn on (constructor keywords, or attributes at run time):

* ``token`` — the token requests must carry (``Authorization: Bearer …`` or a ``token``
  field); others get ``invalid_auth``, none ``not_authed``. ``None`` accepts any ``xox…`` token.
* ``rate_limits`` — ``{"conversations.replies": (20, 0.5)}``: at most 20 calls per 0.5 s window
  per method (``"*"`` for every method); beyond that HTTP 429 with ``Retry-After`` = the time
  left in the window (fractional seconds, so tests stay fast; ``retry_after`` fixes the value).
* ``max_page_size`` — silently caps ``limit`` on history/replies (Slack caps non-Marketplace
  apps at 15 messages per page).
* ``scopes`` — the token's scopes; a method needing another fails with ``missing_scope``.
* ``joined_channels`` — conversations the bot is in (default: all); elsewhere reads and posts
  fail with ``not_in_channel`` until ``conversations.join``.
* :meth:`inject_fault` — HTTP 5xx, a Slack error, a 429, or a dropped connection (socket
  closed, no response) on the Nth call of a method, once or from then on.
* ``latency`` — seconds each request takes (to observe concurrency).
* ``observer`` — called with each :class:`Call` once it is handled, before its response is
  sent (a test can kill the client right after Slack accepted a post).

And what it records: :attr:`calls` (every request: method, params, status, response),
:meth:`count`, :attr:`max_in_flight` (most requests served at once), :attr:`posts` (what was
posted with ``chat.postMessage``). :meth:`response_url` gives a slash command a
``response_url`` served here (what the app posts to it lands in :attr:`responses`; a sixth
use is refused, as Slack refuses it). Several workspaces can be served at once
(``workspaces=``, :meth:`add_workspace`), each to its own tokens, and ``oauth=``
(:class:`~doppelkit_slack.testing.fake_oauth.FakeOAuth`) answers ``oauth.v2.access`` and hands
out those tokens. Slack calling *the app* (signed Events API requests and
slash commands) is the other direction and lives in :mod:`doppelkit_slack.testing.events`.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from doppelkit_slack.testing.fake_oauth import FakeOAuth, Grant
from doppelkit_slack.testing.fake_socket_mode import FakeSocketMode
from doppelkit_slack.testing.fake_workspace import FakeWorkspace, Post, SlackError

__all__ = ["DEFAULT_TOKEN", "Call", "FakeSlack", "FakeWorkspace", "Fault", "Post", "SlackError"]

DEFAULT_TOKEN = "xoxb-fake-token"
API_PREFIX = "/api/"
HOOKS_PREFIX = "/hooks/"  # slash commands' response_url
RESPONSE_URL_USES = 5
FaultKind = Literal["http", "error", "drop", "ratelimited"]


@dataclass(frozen=True)
class Call:
    """One request the server received (``params`` never include the token)."""

    method: str
    params: dict[str, Any]
    status: int  # HTTP status; 0 for a dropped connection
    response: dict[str, Any] | None  # the JSON body sent, None if none was
    fault: str | None = None  # "http", "error", "drop" or "ratelimited" when one was applied
    team: str | None = None  # the workspace that served it (the token's team)

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response and self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return None if self.response is None else self.response.get("error")


@dataclass
class Fault:
    """A failure to inject into calls of ``method`` (``"*"``: any method).

    ``nth`` is the first call (1-based, counted per method) that fails; ``times`` how many
    calls fail from there (``None``: every later call). ``kind``: ``"http"`` answers HTTP
    ``status`` (5xx); ``"error"`` answers 200 with ``{"ok": false, "error": error}``; ``"drop"``
    closes the connection without a response; ``"ratelimited"`` answers 429 with
    ``Retry-After: retry_after`` whatever the budgets (a rate limit at a chosen moment).
    """

    method: str
    kind: FaultKind = "http"
    nth: int = 1
    times: int | None = 1
    status: int = 500
    error: str = "internal_error"
    retry_after: float = 0.05
    fired: int = field(default=0, compare=False)

    def applies(self, method: str, call_number: int) -> bool:
        if self.method not in ("*", method) or call_number < self.nth:
            return False
        return self.times is None or self.fired < self.times


@dataclass
class _Window:
    started: float = 0.0
    used: int = 0


class FakeSlack:
    """A fake Slack Web API over HTTP on ``127.0.0.1`` (a free port), served from a thread.

    Use it as a context manager (or call :meth:`start`/:meth:`stop`). See the module
    docstring for the options; all are plain attributes and may be changed between calls.
    """

    def __init__(
        self,
        workspace: FakeWorkspace,
        *,
        token: str | None = DEFAULT_TOKEN,
        rate_limits: Mapping[str, tuple[int, float]] | None = None,
        retry_after: float | None = None,
        max_page_size: int | None = None,
        scopes: Collection[str] | None = None,
        joined_channels: Collection[str] | None = None,
        faults: Collection[Fault] = (),
        latency: float = 0.0,
        workspaces: Collection[FakeWorkspace] = (),
        oauth: FakeOAuth | None = None,
        socket_mode: FakeSocketMode | None = None,
    ) -> None:
        self.workspace = workspace
        self.token = token
        # Every workspace served, by team ID: ``workspace`` answers ``token``; the others (and
        # ``workspace`` too) answer the tokens their OAuth installs were given.
        self.workspaces: dict[str, FakeWorkspace] = {w.team_id: w for w in (workspace, *workspaces)}
        self.oauth = oauth
        self.socket_mode = socket_mode  # answers apps.connections.open (its xapp- token)
        self.rate_limits: dict[str, tuple[int, float]] = dict(rate_limits or {})
        self.retry_after = retry_after
        self.latency = latency
        workspace.max_page_size = max_page_size
        workspace.scopes = None if scopes is None else set(scopes)
        workspace.joined = (
            None if joined_channels is None else {workspace.resolve(c).id for c in joined_channels}
        )
        self.faults: list[Fault] = list(faults)
        self.observer: Callable[[Call], None] | None = None
        self.calls: list[Call] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._numbers: Counter[str] = Counter()
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.responses: list[tuple[str, dict[str, Any]]] = []  # (hook name, body) per response_url POST

    @classmethod
    def from_export(
        cls,
        path: str | Path,
        *,
        team_id: str | None = None,
        team_name: str = "Fake Workspace",
        **options: Any,
    ) -> FakeSlack:
        """A server over the workspace in a Slack export (zip or folder); ``options`` as for
        the constructor. Private channels, DMs and group DMs are served only if the export
        has them, and only to a ``conversations.list`` asking for those ``types``."""
        return cls(FakeWorkspace.from_export(path, team_id=team_id, team_name=team_name), **options)

    # -- lifetime ------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeSlack", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the Web API, ending in ``/api/`` (``WebClient(base_url=slack.url)``)."""
        if self._server is None:
            raise RuntimeError("FakeSlack is not running: use `with FakeSlack(...) as slack:` or start()")
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}{API_PREFIX}"

    # -- control -------------------------------------------------------------------------

    def inject_fault(
        self,
        method: str,
        kind: FaultKind = "http",
        *,
        nth: int = 1,
        times: int | None = 1,
        status: int = 500,
        error: str = "internal_error",
        retry_after: float = 0.05,
    ) -> Fault:
        """Make the ``nth`` call of ``method`` (counted per method since the start or the last
        :meth:`reset_calls`) fail, and ``times`` calls from there; see :class:`Fault`."""
        fault = Fault(method, kind, nth=nth, times=times, status=status, error=error, retry_after=retry_after)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset_calls(self) -> None:
        """Forget recorded calls, per-method call numbers and ``max_in_flight``."""
        with self._lock:
            self.calls.clear()
            self._numbers.clear()
            self.max_in_flight = 0

    # -- inspection ----------------------------------------------------------------------

    def response_url(self, name: str) -> str:
        """A slash command's ``response_url`` served here: what the app POSTs to it is
        recorded in :attr:`responses` (Slack: at most 5 uses in 30 minutes)."""
        return self.url.removesuffix(API_PREFIX) + HOOKS_PREFIX + urllib.parse.quote(name)

    def responses_to(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for hook, body in self.responses if hook == name]

    @property
    def posts(self) -> list[Post]:
        """Every message accepted by ``chat.postMessage``, in order."""
        return self.workspace.posts

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def count(self, method: str | None = None, *, status: int | None = None) -> int:
        """How many requests were made (to ``method``; with HTTP ``status``)."""
        with self._lock:
            return sum(
                1
                for c in self.calls
                if (method is None or c.method == method) and (status is None or c.status == status)
            )

    # -- request handling ----------------------------------------------------------------

    def _fault_for(self, method: str, number: int) -> Fault | None:
        for fault in self.faults:
            if fault.applies(method, number):
                fault.fired += 1
                return fault
        return None

    def _rate_limited(self, method: str, now: float) -> float | None:
        """Seconds until ``method`` may be called again, or None if this call is allowed."""
        limit = self.rate_limits.get(method) or self.rate_limits.get("*")
        if limit is None:
            return None
        calls, per_seconds = limit
        window = self._windows.setdefault(method, _Window(started=now))
        if now - window.started >= per_seconds:
            window.started, window.used = now, 0
        if window.used >= calls:
            return window.started + per_seconds - now
        window.used += 1
        return None

    def add_workspace(self, workspace: FakeWorkspace) -> FakeWorkspace:
        """Serve another workspace (to the tokens installs in it are given)."""
        with self._lock:
            self.workspaces[workspace.team_id] = workspace
        return workspace

    def _workspace_of(self, team: str) -> FakeWorkspace:
        workspace = self.workspaces.get(team)
        if workspace is None:
            raise SlackError("team_not_found")
        return workspace

    def _authorized(self, token: str | None) -> tuple[FakeWorkspace, Grant | None]:
        """The workspace a token belongs to (and its OAuth grant, if it came from one)."""
        if not token:
            raise SlackError("not_authed")
        grant = self.oauth.grant(token) if self.oauth is not None else None
        if grant is not None:
            return self._workspace_of(grant.team), grant
        if self.token is None:
            if not token.startswith("xox"):
                raise SlackError("invalid_auth")
        elif token != self.token:
            raise SlackError("invalid_auth")
        return self.workspace, None

    def handle(
        self, method: str, params: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, str], Any]:
        """Answer one Web API request: ``(status, headers, body)``; body ``None`` means drop
        the connection. Records the call."""
        with self._lock:
            self._numbers[method] += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            fault = self._fault_for(method, self._numbers[method])
            wait = None if fault else self._rate_limited(method, time.monotonic())
        status, headers, body, applied, team = 200, {}, None, None, None
        try:
            if self.latency:
                time.sleep(self.latency)
            if fault is not None:
                applied = fault.kind
                if fault.kind == "drop":
                    status = 0
                elif fault.kind == "http":
                    status, body = fault.status, {"ok": False, "error": fault.error}
                elif fault.kind == "ratelimited":
                    status, body = 429, {"ok": False, "error": "ratelimited"}
                    headers["Retry-After"] = _seconds_header(fault.retry_after)
                else:
                    body = {"ok": False, "error": fault.error}
            elif wait is not None:
                applied = "ratelimited"
                seconds = self.retry_after if self.retry_after is not None else wait
                status, body = 429, {"ok": False, "error": "ratelimited"}
                headers["Retry-After"] = _seconds_header(seconds)
            else:
                try:
                    body, team = self._call(method, params, token)
                except SlackError as exc:
                    body = exc.body()
            if self.workspace.scopes is not None:
                headers["X-OAuth-Scopes"] = ",".join(sorted(self.workspace.scopes))
            return status, headers, body
        finally:
            call = Call(method, params, status, body, applied, team)
            with self._lock:
                self._in_flight -= 1
                self.calls.append(call)
            if self.observer is not None:
                self.observer(call)

    def _call(self, method: str, params: dict[str, Any], token: str | None) -> tuple[Any, str | None]:
        if method == "oauth.v2.access" and self.oauth is not None:
            return self.oauth.access(params, self._workspace_of), None
        if method == "apps.connections.open" and self.socket_mode is not None:
            return self.socket_mode.open_connection(token), None
        workspace, grant = self._authorized(token)
        if grant is not None and grant.kind == "user" and method == "auth.test":
            body = workspace.call(method, params)  # the installer, not the bot
            body.update(user_id=grant.user_id, user=grant.user_id)
            body.pop("bot_id", None)
            return body, workspace.team_id
        return workspace.call(method, params), workspace.team_id


def _seconds_header(seconds: float) -> str:
    """Retry-After as Slack writes it (whole seconds) unless the value is fractional."""
    seconds = max(0.0, seconds)
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{math.ceil(seconds * 1000) / 1000:.3f}".rstrip("0").rstrip(".")


def _form_params(data: str) -> dict[str, Any]:
    return {k: v[-1] for k, v in urllib.parse.parse_qs(data, keep_blank_values=True).items()}


class _Handler(BaseHTTPRequestHandler):
    """Parses a Web API request (query string, form or JSON body, bearer token) for FakeSlack."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeSlack/1"

    def do_POST(self) -> None:
        fake: FakeSlack = self.server.fake  # type: ignore[attr-defined]
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path.startswith(HOOKS_PREFIX):
            self._hook(fake, urllib.parse.unquote(url.path[len(HOOKS_PREFIX) :]), raw)
            return
        if not url.path.startswith(API_PREFIX):
            self._send(404, {}, {"ok": False, "error": "not_found"})
            return
        method = url.path[len(API_PREFIX) :]
        params = _form_params(url.query)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            text = raw.decode("utf-8")
            if content_type == "application/json" and text:
                body = json.loads(text)
                if isinstance(body, dict):
                    params.update(body)
            elif text:
                params.update(_form_params(text))
        except ValueError:
            self._send(400, {}, {"ok": False, "error": "invalid_json"})
            return
        token = params.pop("token", None)
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        elif auth.lower().startswith("basic "):  # oauth.v2.access: the app's client ID and secret
            try:
                client_id, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except ValueError:
                client_id = secret = ""
            params.setdefault("client_id", client_id)
            params.setdefault("client_secret", secret)
        status, headers, body = fake.handle(method, params, token if isinstance(token, str) else None)
        if status == 0:
            self.close_connection = True  # dropped: the socket closes with no response at all
            return
        self._send(status, headers, body)

    do_GET = do_POST

    def _hook(self, fake: FakeSlack, name: str, raw: bytes) -> None:
        try:
            body = json.loads(raw.decode("utf-8") or "{}")
        except ValueError:
            self._send(400, {}, {"ok": False, "error": "invalid_json"})
            return
        with fake._lock:
            used = sum(1 for hook, _ in fake.responses if hook == name)
            if used < RESPONSE_URL_USES:
                fake.responses.append((name, body if isinstance(body, dict) else {"body": body}))
        if used >= RESPONSE_URL_USES:
            self._send(404, {}, {"ok": False, "error": "used_url"})  # Slack: expired after 5 uses
            return
        self._send(200, {}, {"ok": True})

    def _send(self, status: int, headers: Mapping[str, str], body: Any) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests stay quiet
