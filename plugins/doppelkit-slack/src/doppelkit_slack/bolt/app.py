"""The Bolt app: listeners for mentions, DMs, ``/doppel`` and uninstalls.

``process_before_response=True``: each listener runs inside the request and acks when it
returns. That is safe because listeners only do quick work (claim the event, queue the
reply, answer a command from the store); generation runs on our own worker pool, so a busy
model can never delay an ack the way a saturated Bolt listener pool would.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from doppelkit.home import Home
from doppelkit_slack.bolt.commands import DoppelCommands, Invocation
from doppelkit_slack.bolt.mentions import MentionReplier
from doppelkit_slack.store import PersonaStore

log = logging.getLogger("doppelkit.bolt")
COMMAND = "/doppel"


@dataclass
class BotParts:
    """Everything the listeners use (built by :mod:`doppelkit_slack.bolt.runtime`)."""

    store: PersonaStore
    replier: MentionReplier
    commands: DoppelCommands
    home: Home


class _DropTokenUnusedWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and then warns that our client (which holds that very
    token, plus retry handlers) wins; the warning would only confuse operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


BOLT_LOGGER = logging.getLogger("doppelkit.bolt.slack_bolt")
BOLT_LOGGER.addFilter(_DropTokenUnusedWarning())


def build_app(parts: BotParts, *, client: WebClient, signing_secret: str | None) -> App:
    app = App(
        client=client,
        signing_secret=signing_secret or "",  # socket mode: Slack authenticates the socket instead
        process_before_response=True,
        token_verification_enabled=False,  # no auth.test at construction; Bolt runs it on the first request
        logger=BOLT_LOGGER,
    )
    register_listeners(app, parts)
    return app


def register_listeners(app: App, parts: BotParts) -> None:
    def accept(body: dict[str, Any], context: BoltContext) -> None:
        outcome = parts.replier.accept(body, bot_user_id=context.bot_user_id, bot_id=context.bot_id)
        log.debug("event %s: %s", body.get("event_id"), outcome)

    app.event("app_mention")(accept)
    app.event("message")(accept)

    @app.command(COMMAND)
    def doppel(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
        invocation = Invocation(
            team=str(command.get("team_id") or context.team_id or ""),
            channel=str(command.get("channel_id") or ""),
            user_id=str(command.get("user_id") or ""),
        )
        try:
            reply = parts.commands.handle(str(command.get("text") or ""), invocation)
        except Exception:
            log.exception("/doppel %s failed", command.get("text"))
            reply = "Sorry, that command failed; the bot's log has the details."
        ack(text=reply, response_type="ephemeral")  # only the person who typed it sees it

    @app.event("app_uninstalled")
    @app.event("tokens_revoked")
    def forget_workspace(body: dict[str, Any]) -> None:
        team = body.get("team_id")
        if isinstance(team, str) and team:
            log.info("workspace %s uninstalled the app or revoked its tokens; deleting its data", team)
            forget_team(parts, team)

    # Anything else Slack sends (a subscribed event we do not use) is acknowledged, not a 404
    # that Slack would retry.
    app.event(re.compile(".*"))(lambda: None)


def forget_team(parts: BotParts, team: str) -> None:
    from doppelkit_slack.bolt.commands import forget_files

    for record in parts.store.list(team):
        forget_files(parts.home, team, record.user_id)
    parts.store.delete_team(team)
