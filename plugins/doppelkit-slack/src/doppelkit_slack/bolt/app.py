"""The Bolt app: listeners for mentions, DMs, ``/doppel`` and uninstalls.

``process_before_response=True``: each listener runs inside the request and acks when it
returns. That is safe because listeners only do quick work (claim the event, queue the
reply, answer a command from the store); generation and deleting a workspace's data run on
our own worker pools, so slow work can never delay an ack the way a saturated Bolt listener
pool would.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient

from doppelkit.home import Home
from doppelkit.models import SAFE_ID
from doppelkit_slack.bolt.commands import DoppelCommands, Invocation
from doppelkit_slack.bolt.mentions import MentionReplier
from doppelkit_slack.bolt.posting import without_pings
from doppelkit_slack.bolt.replay import register_replay_guard
from doppelkit_slack.bolt.uninstall import WorkspaceEraser
from doppelkit_slack.store import PersonaStore

log = logging.getLogger("doppelkit.bolt")
COMMAND = "/doppel"


@dataclass
class BotParts:
    """Everything the listeners use (built by :mod:`doppelkit_slack.bolt.runtime`)."""

    store: PersonaStore
    replier: MentionReplier
    commands: DoppelCommands
    eraser: WorkspaceEraser
    home: Home


class _DropTokenUnusedWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and then warns that our client (which holds that very
    token, plus retry handlers) wins; the warning would only confuse operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


BOLT_LOGGER = logging.getLogger("doppelkit.bolt.slack_bolt")
BOLT_LOGGER.addFilter(_DropTokenUnusedWarning())


def build_app(
    parts: BotParts,
    *,
    client: WebClient,
    signing_secret: str | None,
    auth_test: dict[str, Any] | None = None,
    oauth_settings: OAuthSettings | None = None,
) -> App:
    """``auth_test``: the start-up ``auth.test`` answer (:func:`.runtime.verify_token`). Bolt
    keeps it and never calls ``auth.test`` while a request waits for its ack.
    ``oauth_settings``: installs per workspace, each request authorised with its team's bot
    token from the installation store; None: the one bot token ``client`` holds."""
    from slack_bolt.middleware.authorization.single_team_authorization import SingleTeamAuthorization
    from slack_sdk.web import SlackResponse

    app = App(
        client=client,
        signing_secret=signing_secret or "",  # socket mode: Slack authenticates the socket instead
        process_before_response=True,
        token_verification_enabled=False,  # verified once at start-up instead, with retries
        oauth_settings=oauth_settings,
        installation_store_bot_only=True if oauth_settings else None,
        user_facing_authorize_error_message=AUTHORIZE_FAILED,
        logger=BOLT_LOGGER,
    )
    if auth_test is not None:
        answer = SlackResponse(
            client=client, http_verb="POST", api_url="auth.test", req_args={}, data=auth_test, headers={},
            status_code=200,
        )  # fmt: skip
        for middleware in app._middleware_list:  # no public hook: the answer Bolt would cache itself
            if isinstance(middleware, SingleTeamAuthorization):
                middleware.auth_test_result = answer
    register_listeners(app, parts)
    return app


NOT_SERVED = "This bot does not serve this workspace."
# Bolt's answer when a request cannot be authorised: no install for the team, or the database
# holding the installs is unreachable right now.
AUTHORIZE_FAILED = (
    "Sorry, I can't answer in this workspace right now: I could not find its installation (the "
    "database may be unavailable). Try again in a minute; if it keeps failing, reinstall the app."
)
NOT_SLACK_IDS = "This command's channel or user is not a Slack ID; nothing was done."


def served_team(claimed: object, context: BoltContext) -> str | None:
    """The team a request may act for: the one its token was authorised for, and only when
    the request names that very team (a valid ID). Every store query, file path and engine
    lookup of the request is keyed by it; None: refuse the request.

    With one bot token (``SLACK_BOT_TOKEN``) Bolt authorises every request with ``auth.test``
    of that token, so a request naming another team — another workspace of an org, a forged
    ``../../etc`` — is refused. With OAuth the installation was looked up by the request's
    team, so the two agree for every installed workspace.
    """
    if not isinstance(claimed, str) or not SAFE_ID.fullmatch(claimed):
        return None
    result = context.authorize_result
    authorised = result.team_id if result is not None else None
    if authorised is not None and authorised != claimed:
        log.warning("refused a request for team %r: the token is team %s's", claimed[:40], authorised)
        return None
    return claimed


def register_listeners(app: App, parts: BotParts) -> None:
    register_replay_guard(app, parts.store)  # commands and interactions run once

    def accept(body: dict[str, Any], context: BoltContext) -> None:
        parts.eraser.remember_bot(context.bot_user_id, context.bot_id)
        if served_team(body.get("team_id"), context) is None:
            log.debug("event %s: ignored: not this bot's workspace", body.get("event_id"))
            return
        outcome = parts.replier.accept(body, bot_user_id=context.bot_user_id, bot_id=context.bot_id)
        log.debug("event %s: %s", body.get("event_id"), outcome)

    app.event("app_mention")(accept)
    app.event("message")(accept)

    @app.command(COMMAND)
    def doppel(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
        parts.eraser.remember_bot(context.bot_user_id, context.bot_id)
        team = served_team(command.get("team_id"), context)
        if team is None:
            ack(text=NOT_SERVED, response_type="ephemeral")
            return
        invocation = Invocation(
            team=team,
            channel=str(command.get("channel_id") or ""),
            user_id=str(command.get("user_id") or ""),
            response_url=str(command.get("response_url") or ""),
        )
        if not (SAFE_ID.fullmatch(invocation.channel) and SAFE_ID.fullmatch(invocation.user_id)):
            ack(text=NOT_SLACK_IDS, response_type="ephemeral")  # they key posts and records
            return
        try:
            reply = parts.commands.handle(str(command.get("text") or ""), invocation)
        except Exception:
            log.exception("/doppel %s failed", command.get("text"))
            reply = "Sorry, that command failed; the bot's log has the details."
        # Only the person who typed it sees it; like every message the bot writes, it pings nobody.
        ack(text=without_pings(reply), response_type="ephemeral")

    @app.action(re.compile("^doppel_consent_"))
    def consent_pressed(ack: Ack, body: dict[str, Any], context: BoltContext, respond: Respond) -> None:
        ack()  # at once: the answer goes through the interaction's response_url
        gate = parts.commands.consent
        if gate is not None:
            team = (body.get("team") or {}).get("id")
            gate.on_press(body, served_team(team, context), respond)

    @app.event("app_uninstalled")
    def uninstalled(body: dict[str, Any], context: BoltContext) -> None:
        if team := served_team(body.get("team_id"), context):
            parts.eraser.app_uninstalled(team)

    @app.event("tokens_revoked")
    def revoked(body: dict[str, Any], context: BoltContext) -> None:
        if team := served_team(body.get("team_id"), context):
            parts.eraser.tokens_revoked(team, body.get("event") or {})

    # Anything else Slack sends (a subscribed event we do not use) is acknowledged, not a 404
    # that Slack would retry.
    app.event(re.compile(".*"))(lambda: None)
