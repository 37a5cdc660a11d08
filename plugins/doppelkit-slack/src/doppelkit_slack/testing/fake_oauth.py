"""Slack's side of the OAuth v2 install, for :class:`~doppelkit_slack.testing.FakeSlack`.

A test plays the person installing the app::

    oauth = FakeOAuth("123.456", "secret", redirect_uri=bot_url + "/slack/oauth_redirect")
    with FakeSlack(workspace, token=None, oauth=oauth, workspaces=[other]) as slack:
        page = get(bot_url + "/slack/install")             # the bot's install page: a state cookie
        back = oauth.approve(authorize_url_in(page), team="T0002", user="U_ANN")
        get(back, cookie=...)                               # the bot trades the code at oauth.v2.access

:meth:`FakeOAuth.approve` is what Slack's consent page does when the person clicks *Allow*: it
returns the app's redirect URL with a one-time ``code`` and the ``state`` it was given;
:meth:`FakeOAuth.decline` returns it with ``error=access_denied``. ``oauth.v2.access`` then
answers as Slack does (client ID and secret by HTTP Basic auth or form fields; a code works
once, for the redirect URL it was issued for), and every token it hands out is bound to its
team: calls made with it are served from that team's workspace, and recorded with the team
(:attr:`Call.team <doppelkit_slack.testing.fake_slack.Call.team>`).

``token_rotation=True`` gives expiring tokens (``expires_in``) with a refresh token; a refresh
(``grant_type=refresh_token``) issues a new pair and retires the old refresh token. A token
past its expiry gets ``token_expired``; :meth:`revoke` makes a team's tokens ``token_revoked``.
"""

from __future__ import annotations

import html
import http.client
import itertools
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any, Literal

from doppelkit_slack.testing.events import Response
from doppelkit_slack.testing.fake_workspace import SlackError

__all__ = ["Browser", "FakeOAuth", "Grant"]


@dataclass
class Grant:
    """One token Slack handed out: whose it is and until when it works."""

    team: str
    kind: Literal["bot", "user"]
    user_id: str | None = None  # the installer, for a user token
    expires_at: float | None = None
    revoked: bool = False


@dataclass
class _Code:
    team: str
    installer: str
    redirect_uri: str | None
    scopes: list[str]
    user_scopes: list[str]


@dataclass
class FakeOAuth:
    client_id: str
    client_secret: str
    redirect_uri: str | None = None  # the app's configured Redirect URL (when the link has none)
    token_rotation: bool = False
    expires_in: int = 43_200  # seconds a rotating token lives (Slack: 12 h)
    clock: Callable[[], float] = time.time
    grants: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    installs: list[tuple[str, str]] = field(default_factory=list)  # (team, installer), in order
    _codes: dict[str, _Code] = field(default_factory=dict)
    _numbers: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the person on Slack's consent page ---------------------------------------------

    def approve(self, authorize_url: str, *, team: str, user: str) -> str:
        """Allow the install in ``team`` as ``user``: the redirect URL with a fresh code."""
        query = _query(authorize_url)
        if query.get("client_id") != self.client_id:
            raise ValueError(f"the install link is for client {query.get('client_id')!r}")
        redirect = query.get("redirect_uri") or self.redirect_uri
        if not redirect:
            raise ValueError("no redirect_uri in the link and none configured")
        code = f"code-{team}-{next(self._numbers)}"
        with self._lock:
            self._codes[code] = _Code(
                team,
                user,
                query.get("redirect_uri"),
                _split(query.get("scope")),
                _split(query.get("user_scope")),
            )
        return _with_query(redirect, code=code, state=query.get("state"))

    def decline(self, authorize_url: str) -> str:
        """Cancel on the consent page: the redirect URL with ``error=access_denied``."""
        query = _query(authorize_url)
        redirect = query.get("redirect_uri") or self.redirect_uri or ""
        return _with_query(redirect, error="access_denied", state=query.get("state"))

    def revoke(self, team: str, kind: Literal["bot", "user"] | None = None) -> None:
        """Revoke ``team``'s tokens (of one kind, or all): calls then fail with token_revoked."""
        with self._lock:
            for grant in self.grants.values():
                if grant.team == team and kind in (None, grant.kind):
                    grant.revoked = True

    def tokens_of(self, team: str, kind: Literal["bot", "user"] = "bot") -> list[str]:
        """Tokens handed out for ``team``, oldest first."""
        with self._lock:
            return [t for t, g in self.grants.items() if g.team == team and g.kind == kind]

    # -- the Web API side -----------------------------------------------------------------

    def grant(self, token: str) -> Grant | None:
        """The grant behind ``token``; raises ``token_revoked``/``token_expired`` when dead."""
        with self._lock:
            grant = self.grants.get(token)
        if grant is None:
            return None
        if grant.revoked:
            raise SlackError("token_revoked")
        if grant.expires_at is not None and self.clock() >= grant.expires_at:
            raise SlackError("token_expired")
        return grant

    def access(self, params: dict[str, Any], bots: Callable[[str], Any]) -> dict[str, Any]:
        """``oauth.v2.access``: trade a code (or a refresh token) for tokens.

        ``bots(team)`` gives the team's workspace (its bot identity and name)."""
        if params.get("client_id") != self.client_id:
            raise SlackError("invalid_client_id")
        if params.get("client_secret") != self.client_secret:
            raise SlackError("bad_client_secret")
        if params.get("grant_type") == "refresh_token":
            return self._refresh(str(params.get("refresh_token") or ""), bots)
        with self._lock:
            code = self._codes.pop(str(params.get("code") or ""), None)
        if code is None:
            raise SlackError("invalid_code")
        if code.redirect_uri is not None and params.get("redirect_uri") != code.redirect_uri:
            raise SlackError("bad_redirect_uri")
        workspace = bots(code.team)
        response: dict[str, Any] = {
            "ok": True,
            "app_id": workspace.bot.app_id,
            "authed_user": {"id": code.installer},
            "scope": ",".join(code.scopes),
            "token_type": "bot",
            "bot_user_id": workspace.bot.user_id,
            "team": {"id": workspace.team_id, "name": workspace.team_name},
            "enterprise": None,
            "is_enterprise_install": False,
            **self._issue(code.team, "bot"),
        }
        if code.user_scopes:
            user = self._issue(code.team, "user", code.installer)
            response["authed_user"].update(
                {"scope": ",".join(code.user_scopes), "token_type": "user", **user}
            )
        with self._lock:
            self.installs.append((code.team, code.installer))
        return response

    def _refresh(self, refresh_token: str, bots: Callable[[str], Any]) -> dict[str, Any]:
        with self._lock:
            old = self.refresh_tokens.pop(refresh_token, None)
        if old is None or old.revoked:
            raise SlackError("invalid_refresh_token")
        workspace = bots(old.team)
        return {
            "ok": True,
            "app_id": workspace.bot.app_id,
            "token_type": old.kind,
            "team": {"id": workspace.team_id, "name": workspace.team_name},
            "enterprise": None,
            "is_enterprise_install": False,
            **self._issue(old.team, old.kind, old.user_id),
        }

    def _issue(self, team: str, kind: Literal["bot", "user"], user: str | None = None) -> dict[str, Any]:
        number = next(self._numbers)
        token = f"xox{'b' if kind == 'bot' else 'p'}-{team}-{number}"
        expires = self.clock() + self.expires_in if self.token_rotation else None
        grant = Grant(team, kind, user, expires)
        issued: dict[str, Any] = {"access_token": token}
        with self._lock:
            self.grants[token] = grant
            if self.token_rotation:
                refresh = f"xoxe-1-{team}-{number}"
                self.refresh_tokens[refresh] = grant
                issued.update(refresh_token=refresh, expires_in=self.expires_in)
        return issued


def _query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}


def _split(value: str | None) -> list[str]:
    return [s for s in (value or "").split(",") if s]


def _with_query(url: str, **values: str | None) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.urlencode({k: v for k, v in values.items() if v is not None})
    joined = f"{parts.query}&{query}" if parts.query else query
    return urllib.parse.urlunsplit(parts._replace(query=joined))


class Browser:
    """The installing person's browser, for a bot's install pages: keeps cookies between
    ``GET``s (the OAuth state cookie), follows nothing by itself."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.cookies: dict[str, str] = {}
        self.timeout = timeout

    def get(self, url: str) -> Response:
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=self.timeout
        )
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(
                "GET", urllib.parse.urlunsplit(("", "", parts.path, parts.query, "")), headers=headers
            )
            raw = connection.getresponse()
            body = raw.read()
            for name, value in raw.getheaders():
                if name.lower() == "set-cookie":
                    cookie = SimpleCookie()
                    cookie.load(value)
                    self.cookies.update({k: m.value for k, m in cookie.items()})
            return Response(raw.status, body, {k.lower(): v for k, v in raw.getheaders()})
        finally:
            connection.close()

    def install_link(self, page: Response) -> str:
        """The "Add to Slack" link of an install page (Slack's authorize URL)."""
        found = re.search(r'href="([^"]*oauth/v2/authorize[^"]*)"', page.text)
        if found is None:
            raise AssertionError(f"no install link on the page: {page.text[:300]!r}")
        return html.unescape(found.group(1))
