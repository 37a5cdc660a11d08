"""A bot installed by OAuth in two workspaces of one FakeSlack (the fake plays Slack's consent
page and ``oauth.v2.access``; :class:`Browser` plays the installing person)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bolt_support import BOT_ID, BOT_USER, CHANNEL, SECRET, TEAM, default_members, member

from doppelkit.testing.fakes import EchoEngine
from doppelkit.testing.helpers import make_context
from doppelkit_slack.bolt.config import BoltConfig
from doppelkit_slack.bolt.oauth import OAuthCredentials
from doppelkit_slack.bolt.runtime import BoltRuntime, build_runtime
from doppelkit_slack.bolt.server import HttpServer, asgi_app
from doppelkit_slack.testing import Browser, FakeOAuth, FakeSlack
from doppelkit_slack.testing.bolt import wait_idle
from doppelkit_slack.testing.events import EventSender, Response, app_mention
from doppelkit_slack.testing.fake_workspace import BotIdentity, Conversation, FakeWorkspace, Post

CLIENT_ID, CLIENT_SECRET = "1111.2222", "client-secret"
OTHER = "T0002"
OTHER_BOT_USER, OTHER_BOT_ID = "UBOT0002", "BBOT0002"
OTHER_CHANNEL = "C0002"
BOT_OF = {TEAM: BOT_USER, OTHER: OTHER_BOT_USER}
CHANNEL_OF = {TEAM: CHANNEL, OTHER: OTHER_CHANNEL}


def two_workspaces(**oauth: Any) -> tuple[FakeSlack, FakeOAuth]:
    """T0001 (Ann, Bob, two Alexes) and T0002 (Zed, and another "Ann"), behind one fake API."""
    first = FakeWorkspace(
        team_id=TEAM,
        team_name="First",
        users=default_members(),
        conversations=[Conversation(CHANNEL, "public", {"id": CHANNEL, "name": "general"})],
        bot=BotIdentity(user_id=BOT_USER, bot_id=BOT_ID, app_id="A0001", name="doppel"),
    )
    second = FakeWorkspace(
        team_id=OTHER,
        team_name="Second",
        users=[
            member("U_ZED", "Zed"),
            member("U_ANN2", "Ann", "Ann Other"),
            member("U_OLGA2", "Olga", "Olga Second", is_admin=True),
        ],
        conversations=[Conversation(OTHER_CHANNEL, "public", {"id": OTHER_CHANNEL, "name": "random"})],
        bot=BotIdentity(user_id=OTHER_BOT_USER, bot_id=OTHER_BOT_ID, app_id="A0001", name="doppel"),
    )
    fake_oauth = FakeOAuth(CLIENT_ID, CLIENT_SECRET, **oauth)
    # No token works until an install hands one out.
    slack = FakeSlack(first, token="xoxb-nobody", workspaces=[second], oauth=fake_oauth).start()
    return slack, fake_oauth


@dataclass
class OAuthBot:
    runtime: BoltRuntime
    server: HttpServer
    sender: EventSender
    engine: EchoEngine
    slack: FakeSlack
    oauth: FakeOAuth
    browsers: dict[str, Browser] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def install(self, team: str, user: str = "U_ANN") -> Response:
        """The whole install as a person does it; the redirect page's response."""
        browser = Browser()
        page = browser.get(self.url + "/slack/install")
        assert page.status == 200, page.text
        back = self.oauth.approve(browser.install_link(page), team=team, user=user)
        self.browsers[team] = browser
        return browser.get(back)

    def command(self, text: str, team: str, user: str = "U_BOB") -> str:
        hook = self.slack.response_url(f"{team}-{text}")
        response = self.sender.send_command(
            text, team=team, user=user, channel=CHANNEL_OF.get(team, "C0009"), response_url=hook
        )
        assert response.status == 200, response.text
        return str(response.json()["text"]) if response.body else ""

    def mention(self, team: str, ts: str, text: str = "hi", user: str = "U_BOB") -> Response:
        event = app_mention(
            f"<@{BOT_OF[team]}> {text}", user=user, channel=CHANNEL_OF[team], ts=ts, team=team
        )
        self.slack.workspaces[team].add_message(
            event["channel"], {"ts": ts, "user": user, "text": event["text"]}
        )
        return self.sender.send_event(event, team=team)

    def posts(self, team: str, n: int, settle: float = 0.2) -> list[Post]:
        workspace = self.slack.workspaces[team]
        deadline = time.monotonic() + 5
        while len(workspace.posts) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(settle)
        wait_idle(self.runtime)
        return list(workspace.posts)


def start_oauth_bot(
    tmp_path: Path, slack: FakeSlack, oauth: FakeOAuth, engine: EchoEngine, **config: Any
) -> OAuthBot:
    options = {"mode": "http", "port": 0, "api_url": slack.url, "api_retries": 1, "api_retry_backoff": 0.01}
    settings = BoltConfig(**{**options, "avatar": "none", "oauth": True, "consent": "none", **config})
    context = make_context(tmp_path / "home")
    runtime = build_runtime(
        settings,
        context,
        engine,
        bot_token=None,
        signing_secret=SECRET,
        oauth=OAuthCredentials(CLIENT_ID, CLIENT_SECRET),
    )
    server = HttpServer(asgi_app(runtime, SECRET), "127.0.0.1", 0).start()
    oauth.redirect_uri = server.url + settings.redirect_path
    return OAuthBot(runtime, server, EventSender(server.url + settings.path, SECRET), engine, slack, oauth)


def stop_oauth_bot(bot: OAuthBot) -> None:
    bot.server.stop()
    bot.runtime.close()
    bot.slack.stop()
