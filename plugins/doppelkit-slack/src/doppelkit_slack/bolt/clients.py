"""Which Web API client (which token) the bot uses for a team.

Listeners answer inside the request with Bolt's own per-request client; the work after the ack
(replies, training progress, deleting a workspace) runs on our threads, possibly hours later,
and asks :class:`TeamClients` for the team's client each time:

* one bot token (``SLACK_BOT_TOKEN``): that token's client, whatever the team — requests for
  other teams never get this far (:func:`doppelkit_slack.bolt.app.served_team`);
* OAuth: the team's bot token from the installation store (``find_bot``), refreshed through
  Bolt's token rotator when it is about to expire, so a reply or a progress post never goes out
  with another team's token or an expired one. A team without an installation gets a client
  without a token: its calls fail with ``not_authed`` (handled like any failed call).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from doppelkit_slack.bolt.config import MAX_RETRY_AFTER_S, BoltConfig
from doppelkit_slack.webclient import web_client

if TYPE_CHECKING:
    from slack_sdk.oauth.installation_store import InstallationStore
    from slack_sdk.oauth.token_rotation import TokenRotator

log = logging.getLogger("doppelkit.bolt")
MAX_CACHED_CLIENTS = 10_000
ROTATE_MINUTES_BEFORE_EXPIRY = 120  # as Bolt's authorizer: refresh 2 h before a 12 h token expires


def client_factory(config: BoltConfig) -> Callable[[str | None], WebClient]:
    """Web API clients for any token, with ``frontend.*``'s URL, retries and timeout."""

    def make(token: str | None) -> WebClient:
        return web_client(
            token,
            config.api_url,
            max_retries=config.api_retries,
            backoff_s=config.api_retry_backoff,
            max_retry_after_s=MAX_RETRY_AFTER_S,
            timeout_s=config.api_timeout,
        )

    return make


class TeamClients:
    def __init__(
        self,
        make: Callable[[str | None], WebClient],
        *,
        single: WebClient | None = None,
        installations: InstallationStore | None = None,
        rotator: TokenRotator | None = None,
    ) -> None:
        """``single``: the one bot token's client; or ``installations`` (OAuth): per team."""
        if (single is None) == (installations is None):
            raise ValueError("give either the single client or the installation store")
        self.make = make
        self.single = single
        self.installations = installations
        self.rotator = rotator
        self._lock = threading.Lock()
        self._by_token: dict[str | None, WebClient] = {}

    @property
    def oauth(self) -> bool:
        return self.installations is not None

    def __call__(self, team: str) -> WebClient:
        if self.single is not None:
            return self.single
        return self._client(self.bot_token(team))

    def bot_token(self, team: str) -> str | None:
        """The team's current bot token (rotated if due), or None when it has none."""
        assert self.installations is not None
        bot = self.installations.find_bot(enterprise_id=None, team_id=team)
        if bot is None:
            return None
        if bot.bot_refresh_token and self.rotator is not None:
            try:
                refreshed = self.rotator.perform_bot_token_rotation(
                    bot=bot, minutes_before_expiration=ROTATE_MINUTES_BEFORE_EXPIRY
                )
            except Exception as exc:  # Slack refused the refresh: the old token may still work
                log.warning("could not refresh team %s's bot token: %s", team, type(exc).__name__)
            else:
                if refreshed is not None:
                    self.installations.save_bot(refreshed)
                    return refreshed.bot_token
        return bot.bot_token

    def _client(self, token: str | None) -> WebClient:
        with self._lock:
            client = self._by_token.get(token)
            if client is None:
                if len(self._by_token) > MAX_CACHED_CLIENTS:  # rotated tokens of the past
                    self._by_token.clear()
                client = self._by_token[token] = self.make(token)
            return client
