"""Shared pieces of the bolt frontend tests: a running bot over HTTP and a Web API fake.

``WebApiStub`` is a deliberately small stand-in for the Web API (auth.test, users.list,
conversations.replies, chat.postMessage with recorded posts, scripted faults) so these tests
do not depend on the full fake server's internals.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from doppelkit.testing.fakes import EchoEngine
from doppelkit.testing.helpers import make_context
from doppelkit_slack.bolt.frontend import BoltConfig
from doppelkit_slack.bolt.runtime import BoltRuntime, build_runtime
from doppelkit_slack.bolt.server import HttpServer, asgi_app
from doppelkit_slack.testing_events import EventSender, app_mention

TEAM = "T0001"
BOT_USER = "UBOT0001"
BOT_ID = "BBOT0001"
SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
CHANNEL = "C0001"
ROOT_TS = "1700000000.000100"


@dataclass
class WebApiStub:
    users: list[dict[str, Any]] = field(default_factory=list)
    threads: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    posts: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    # method -> list of scripted (status, retry_after) answered before normal behaviour
    faults: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WebApiStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                method = self.path.rstrip("/").rsplit("/", 1)[-1]
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    args = json.loads(raw or "{}")
                else:
                    args = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                status, headers, payload = stub.answer(method, args)
                body = json.dumps(payload).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, method: str, args: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self.lock:
            self.calls.append(method)
            scripted = self.faults.get(method)
            if scripted:
                status, retry_after = scripted.pop(0)
                headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                return (
                    status,
                    headers,
                    {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"},
                )
            if method == "auth.test":
                return (
                    200,
                    {},
                    {"ok": True, "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID, "team": "t"},
                )
            if method == "users.list":
                return 200, {}, {"ok": True, "members": self.users, "response_metadata": {"next_cursor": ""}}
            if method == "conversations.replies":
                messages = self.threads.get((args.get("channel", ""), args.get("ts", "")), [])
                return 200, {}, {"ok": True, "messages": messages, "has_more": False}
            if method == "chat.postMessage":
                ts = f"{time.time():.6f}"
                post = {**args, "ts": ts}
                self.posts.append(post)
                return 200, {}, {"ok": True, "channel": args.get("channel"), "ts": ts, "message": post}
            return 200, {}, {"ok": False, "error": "unknown_method"}

    def wait_for_posts(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.posts) >= n:
                    return list(self.posts)
            time.sleep(0.01)
        return list(self.posts)


def member(user_id: str, display_name: str, real_name: str = "", *, is_bot: bool = False) -> dict[str, Any]:
    return {
        "id": user_id,
        "name": display_name.lower().replace(" ", "."),
        "is_bot": is_bot,
        "deleted": False,
        "profile": {"display_name": display_name, "real_name": real_name or display_name},
    }


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def default_members() -> list[dict[str, Any]]:
    return [
        member("U_ANN", "Ann"),
        member("U_BOB", "Bob"),
        member("U_AL1", "Alex", "Alex Smith"),
        member("U_AL2", "Alex", "Alex Jones"),
        member(BOT_USER, "doppel", is_bot=True),
    ]


def running_stub() -> Iterator[WebApiStub]:
    stub = WebApiStub(users=default_members()).start()
    yield stub
    stub.stop()


@dataclass
class Bot:
    runtime: BoltRuntime
    server: HttpServer
    sender: EventSender
    engine: EchoEngine
    slack: WebApiStub

    def mention(self, text: str = "how are you?", *, ts: str = ROOT_TS, **kwargs: Any) -> Any:
        event = app_mention(f"<@{BOT_USER}> {text}", user="U_BOB", channel=CHANNEL, ts=ts, team=TEAM)
        return self.sender.send_event(event, team=TEAM, **kwargs)


def start_bot(
    tmp_path: Path, slack: WebApiStub, engine: EchoEngine, *, persona: str | None = "U_ANN", **config: Any
) -> Bot:
    options = {"mode": "http", "port": 0, "api_url": slack.url, "api_retries": 2, "api_retry_backoff": 0.01}
    settings = BoltConfig(**{**options, "avatar": "none", **config})
    context = make_context(tmp_path / "home", persona=persona)
    runtime = build_runtime(settings, context, engine, bot_token=TOKEN, signing_secret=SECRET)
    server = HttpServer(asgi_app(runtime, SECRET), "127.0.0.1", 0).start()
    return Bot(runtime, server, EventSender(server.url + settings.path, SECRET), engine, slack)


def stop_bot(bot: Bot) -> None:
    bot.server.stop()
    bot.runtime.close()


def replies(bot: Bot, n: int = 1, settle: float = 0.3) -> list[dict[str, Any]]:
    """The posts once ``n`` arrived, after a short wait for any extra (duplicate) post."""
    bot.slack.wait_for_posts(n)
    time.sleep(settle)
    bot.runtime.wait_idle()
    return list(bot.slack.posts)
