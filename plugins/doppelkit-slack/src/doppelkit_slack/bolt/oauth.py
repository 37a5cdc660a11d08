"""The OAuth install (``frontend.oauth=true``): any workspace can add the bot.

Bolt's ``OAuthSettings`` do the flow (``GET /slack/install`` issues a state and links to Slack's
consent page; ``GET /slack/oauth_redirect`` checks the state's cookie and row, trades the code at
``oauth.v2.access``, runs ``auth.test`` with the new bot token and saves the installation). We
give it slack_sdk's SQLAlchemy stores on the persona store's engine (the same database: no files
in the home directory), a token rotator that talks to the configured ``api_url`` (Bolt builds
its own client for it, pointing at slack.com), pages that say what to do next, and a state
store that purges expired states (the library never does).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from slack_bolt.authorization.authorize import InstallationStoreAuthorize
from slack_bolt.oauth.callback_options import CallbackOptions, FailureArgs, SuccessArgs
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation import TokenRotator

from doppelkit_slack.bolt.config import BoltConfig
from doppelkit_slack.store import PersonaStore

log = logging.getLogger("doppelkit.bolt")

# Why an install failed, in words for the person who tried (Bolt's reason codes).
FAILURES = {
    "access_denied": "The install was cancelled on Slack's page, so nothing was installed.",
    "invalid_browser": (
        "This browser did not come from the install link (its cookie is missing), or the link "
        "was opened in another browser."
    ),
    "invalid_state": "The install link has expired or was already used.",
    "missing_code": "Slack did not send an authorisation code back.",
    "invalid_code": "Slack did not accept the authorisation (the code was refused or had expired).",
    "storage_error": "The bot could not save the installation.",
}


class PurgingStateStore(SQLAlchemyOAuthStateStore):
    """slack_sdk's state store, minus the expired states: each new state purges them, so the
    table holds only links still in use (slack_sdk never deletes an unused state)."""

    def issue(self, *args: object, **kwargs: object) -> str:
        self.purge_expired()
        return str(super().issue(*args, **kwargs))

    def purge_expired(self) -> int:
        table = self.oauth_states
        cutoff = datetime.now(UTC).replace(tzinfo=None)  # slack_sdk stores naive UTC
        with self.engine.begin() as conn:
            return int(conn.execute(table.delete().where(table.c.expire_at <= cutoff)).rowcount)


@dataclass(frozen=True)
class OAuthCredentials:
    """``SLACK_CLIENT_ID`` and ``SLACK_CLIENT_SECRET`` (App Credentials)."""

    client_id: str
    client_secret: str


@dataclass
class OAuthParts:
    settings: OAuthSettings
    installations: SQLAlchemyInstallationStore
    states: PurgingStateStore


def build_oauth(
    config: BoltConfig, store: PersonaStore, *, client_id: str, client_secret: str, client: WebClient
) -> OAuthParts:
    """Bolt's OAuth settings over the persona store's database; tables created if missing."""
    installations = SQLAlchemyInstallationStore(client_id=client_id, engine=store.engine, logger=log)
    states = PurgingStateStore(expiration_seconds=config.state_expiration_s, engine=store.engine, logger=log)
    for metadata in (installations.metadata, states.metadata):
        store.create_tables(metadata)
    redirect_uri = config.redirect_uri
    if redirect_uri is None and config.public_url:
        redirect_uri = config.public_url.rstrip("/") + config.redirect_path
    settings = OAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(config.scopes),
        user_scopes=list(config.user_scopes),
        redirect_uri=redirect_uri,
        install_path=config.install_path,
        redirect_uri_path=config.redirect_path,
        authorization_url=config.authorize_url,
        installation_store=installations,
        installation_store_bot_only=True,  # the bot acts with bot tokens only
        state_store=states,
        state_expiration_seconds=config.state_expiration_s,
        callback_options=CallbackOptions(success=_installed, failure=_failed),
        logger=log,
    )
    rotator = token_rotator(settings)
    if rotator is not None:
        rotator.client = client  # Bolt's rotator would refresh at slack.com, not at api_url
    return OAuthParts(settings, installations, states)


def token_rotator(settings: OAuthSettings) -> TokenRotator | None:
    """The rotator of the authorizer Bolt built from ``settings`` (client ID and secret given)."""
    authorize = settings.authorize
    return authorize.token_rotator if isinstance(authorize, InstallationStoreAuthorize) else None


def _page(title: str, body: str, status: int) -> BoltResponse:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return BoltResponse(status=status, body=text, headers={"Content-Type": "text/html; charset=utf-8"})


def _installed(args: SuccessArgs) -> BoltResponse:
    installation = args.installation
    team = html.escape(installation.team_name or installation.team_id or "your workspace")
    log.info("installed in team %s", installation.team_id)
    return _page(
        "doppelkit is installed",
        f"<p>The bot is now in <b>{team}</b>. What next:</p><ol>"
        "<li>Invite it to a channel: <code>/invite @doppelkit</code>.</li>"
        "<li>Ask someone to be cloned: <code>/doppel train @someone</code> — they get a "
        "message asking for their consent first.</li>"
        "<li>Once trained, mention the bot in a thread. <code>/doppel help</code> lists every "
        "command.</li></ol><p>You can close this page.</p>",
        200,
    )


def _failed(args: FailureArgs) -> BoltResponse:
    reason = FAILURES.get(args.reason, f"The install failed ({args.reason}).")
    install = html.escape(args.settings.install_path)
    log.info("an install failed: %s", args.reason)
    return _page(
        "doppelkit was not installed",
        f"<p>{html.escape(reason)}</p><p>Nothing was changed in your workspace. "
        f"<a href='{install}'>Start the install again</a>; if it keeps failing, ask the "
        "bot's operator to check its log.</p>",
        args.suggested_status_code,
    )


def storage_failure(install_path: str) -> BoltResponse:
    """The page when the database failed during the install (not a 5xx error page)."""
    return _page(
        "doppelkit was not installed",
        "<p>The bot's database is unavailable right now, so nothing was installed. "
        f"<a href='{html.escape(install_path)}'>Try again</a> in a few minutes.</p>",
        503,
    )


def installed_teams(installations: SQLAlchemyInstallationStore) -> list[str]:
    """Teams with a bot installed (the bots table: a revoked *user* token removes an
    installation row while the bot row stays, and the bot keeps working)."""
    table = installations.bots
    query = sa.select(table.c.team_id).where(table.c.client_id == installations.client_id).distinct()
    with installations.engine.connect() as conn:
        return sorted(str(row[0]) for row in conn.execute(query) if row[0])
