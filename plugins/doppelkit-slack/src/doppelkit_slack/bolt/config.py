"""``frontend.*`` for ``frontend=bolt``, and the secrets the bot reads from the environment.

A leaf module (pydantic only): the component (:mod:`.frontend`), the server (:mod:`.server`) and
the runtime (:mod:`.runtime`) all import it, and it imports none of them.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from doppelkit.errors import UserError
from doppelkit_slack.bolt.permissions import Permissions

BOT_TOKEN_ENV = "SLACK_BOT_TOKEN"
SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"
APP_TOKEN_ENV = "SLACK_APP_TOKEN"
CLIENT_ID_ENV = "SLACK_CLIENT_ID"
CLIENT_SECRET_ENV = "SLACK_CLIENT_SECRET"
# What the bot itself needs (see docs/slack-setup.md's manifest): mentions, DMs, threads,
# member names, posting as the persona, /doppel.
BOT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "channels:read",
    "chat:write",
    "chat:write.customize",
    "commands",
    "im:history",
    "im:read",
    "users:read",
)
MAX_RETRY_AFTER_S = 60.0  # a post held back longer than a minute is worse than none


class BoltConfig(BaseModel):
    """``frontend.*`` for ``frontend=bolt``. Secrets never live here: they come from the
    environment (``SLACK_BOT_TOKEN``, ``SLACK_SIGNING_SECRET``, ``SLACK_APP_TOKEN``)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["socket", "http"] = "socket"  # socket needs no public URL: right for local runs
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)  # 0 picks a free port (printed on start)
    path: str = Field("/slack/events", pattern=r"^/[A-Za-z0-9_./-]*$")
    # Socket Mode: serve GET /healthz on host:health_port (0: a free port, printed); null: none.
    # (HTTP mode serves /healthz on its own port.)
    health_port: int | None = Field(None, ge=0, le=65535)
    api_url: str | None = None  # Slack Web API base URL; null = https://slack.com/api/
    max_body_bytes: int = Field(1_000_000, ge=1024)
    persona_limit: int = Field(10, ge=1)  # personas per workspace
    training_limit: int = Field(2, ge=1)  # trainings running at once per workspace
    replies_per_minute: int = Field(30, ge=1)  # mentions answered per workspace and minute
    permissions: Permissions = Field(default_factory=Permissions)  # who may train, switch, forget
    max_message_chars: int = Field(4000, ge=100, le=40000)  # longer replies are split
    max_thread_messages: int = Field(200, ge=1)  # newest messages of a thread given to the engine
    reply_workers: int = Field(2, ge=1, le=64)  # replies generated at once
    reply_queue_max: int = Field(100, ge=1)  # mentions waiting for a worker; more get a "busy" notice
    reply_max_age_s: float = Field(300, gt=0)  # a mention waiting longer gets an apology, not a stale reply
    reply_lease_s: float = Field(60, ge=1)  # a killed bot's unfinished replies are taken over after this
    ack_store_wait_s: float = Field(0.025, gt=0, le=2)  # longest an ack waits for the store to record a job
    startup_auth_attempts: int = Field(5, ge=1, le=100)  # auth.test tries at start (transient failures)
    answer_dms: bool = True
    avatar: Literal["none", "profile", "disguise"] = "disguise"
    public_url: str | None = None  # where Slack can fetch disguised avatars (HTTP mode)
    api_retries: int = Field(3, ge=0, le=10)  # Web API retries on 429 / 5xx per call
    api_retry_backoff: float = Field(0.5, ge=0)  # seconds, doubled per retry (5xx)
    api_timeout: float = Field(30, gt=0)
    store_url: str | None = Field(
        None, description="SQLAlchemy URL of the persona store; null = SQLite under home/state"
    )
    # ask the person before training them (a DM with Approve/Decline); "none": one-person set-ups
    consent: Literal["ask", "none"] = "ask"
    # --- several workspaces: the OAuth install (docs/multi-workspace.md) ---
    oauth: bool = False  # HTTP mode: installs per workspace (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET)
    scopes: list[str] = Field(default_factory=lambda: list(BOT_SCOPES))  # bot scopes asked at install
    user_scopes: list[str] = Field(default_factory=list)  # none: the bot needs no user token
    install_path: str = Field("/slack/install", pattern=r"^/[A-Za-z0-9_./-]*$")
    redirect_path: str = Field("/slack/oauth_redirect", pattern=r"^/[A-Za-z0-9_./-]*$")
    redirect_uri: str | None = None  # the full Redirect URL set in the app; null: public_url + redirect_path
    authorize_url: str = "https://slack.com/oauth/v2/authorize"
    state_expiration_s: int = Field(600, ge=30, le=86400)  # how long an install link stays valid


def required_secret(name: str, why: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise UserError(f"{name} is not set; {why}. See docs/slack-setup.md.")
    return value
