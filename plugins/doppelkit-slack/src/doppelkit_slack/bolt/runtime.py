"""Assembling the bot: store, Web API client, persona chooser, replier, commands, Bolt app."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from doppelkit.errors import UserError
from doppelkit.interfaces import Engine, RunContext
from doppelkit.models import Persona
from doppelkit_slack.bolt.app import BotParts, build_app
from doppelkit_slack.bolt.avatar import Avatars
from doppelkit_slack.bolt.clients import TeamClients, client_factory
from doppelkit_slack.bolt.commands import DoppelCommands
from doppelkit_slack.bolt.config import BoltConfig
from doppelkit_slack.bolt.consent import ConsentGate, ConsentStore
from doppelkit_slack.bolt.forgetting import Forgetting
from doppelkit_slack.bolt.jobs import JobSettings
from doppelkit_slack.bolt.mentions import SYSTEM_USERNAME, MentionReplier, ReplySettings
from doppelkit_slack.bolt.oauth import OAuthCredentials, OAuthParts, build_oauth, token_rotator
from doppelkit_slack.bolt.personas import (
    ChannelDirectory,
    MemberDirectory,
    PersonaChooser,
    resolve_command_line_persona,
)
from doppelkit_slack.bolt.posting import Identity, post_messages
from doppelkit_slack.bolt.respond import ResponseUrls
from doppelkit_slack.bolt.training import Launch, PipelineSteps, TrainingRunner, TrainingSteps, train_detached
from doppelkit_slack.bolt.uninstall import WorkspaceEraser
from doppelkit_slack.store import PersonaStore, default_url
from doppelkit_slack.webclient import AUTH_ERRORS

log = logging.getLogger("doppelkit.bolt")
DISPATCH_THREADS = 32  # HTTP requests handed to Bolt at once (each only claims and queues)


@dataclass
class BoltRuntime:
    app: App
    parts: BotParts
    client: WebClient
    config: BoltConfig
    chooser: PersonaChooser
    training: TrainingRunner
    clients: TeamClients
    oauth: OAuthParts | None = None

    dispatch_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(DISPATCH_THREADS, thread_name_prefix="doppel-dispatch")
    )

    def close(self, wait: bool = False) -> None:
        """Stop every worker pool: HTTP dispatch, replies (queued ones dropped unless ``wait``)
        and workspace deletions (always finished: Slack will not ask again)."""
        self.dispatch_pool.shutdown(wait=wait, cancel_futures=not wait)
        self.parts.replier.shutdown(wait=wait)
        self.parts.eraser.shutdown(wait=True)


def store_url(config: BoltConfig, context: RunContext) -> str:
    return config.store_url or default_url(context.home.state)


DETACHED_RUN_MAX = timedelta(hours=25)  # longer than any detached run may last (Modal: 24 h)
DETACHED_RUN_LOST = "interrupted: the training run stopped without reporting back"


def detached_launch(context: RunContext) -> Launch | None:
    """``/doppel train`` through the run's backend when it can start steps detached (its own
    containers may stop when idle, so a thread here could die mid-run); None: a thread here."""
    from doppelkit import jobs
    from doppelkit.interfaces import DetachingBackend

    run = context.run
    if run is None or "backend" not in run.selections:
        return None
    backend = jobs.backend_for(run, context)
    if not isinstance(backend, DetachingBackend):
        return None
    data = run.to_data()

    def launch(persona: Persona, channel: str) -> None:
        user = persona.user.model_dump(mode="json")
        backend.spawn(train_detached, data, persona.team, channel, user)

    return launch


def verify_token(client: WebClient, attempts: int, backoff_s: float = 0.5) -> dict[str, Any]:
    """``auth.test`` once, at start-up (retrying what may pass: no network, 5xx, 429), so no
    request ever waits for it; a refused token is a :class:`UserError` (exit 2)."""
    from slack_sdk.errors import SlackApiError, SlackClientError

    reason = ""
    for attempt in range(attempts):
        try:
            return dict(client.auth_test().data or {})  # type: ignore[arg-type]
        except SlackApiError as exc:
            error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
            if error in AUTH_ERRORS or error == "missing_scope":
                raise UserError(
                    f"Slack refused SLACK_BOT_TOKEN on auth.test ({error}): use the app's valid, unrevoked "
                    "xoxb- bot token. See docs/slack-setup.md."
                ) from None
            reason = error
        except (SlackClientError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if attempt + 1 < attempts:
            delay = min(backoff_s * 2**attempt, 10.0)
            log.warning("auth.test failed (%s); retrying in %.1f s", reason, delay)
            time.sleep(delay)
    raise UserError(
        f"Could not verify SLACK_BOT_TOKEN with Slack's auth.test after {attempts} tries ({reason}); "
        "check the network and frontend.api_url."
    )


def open_store(config: BoltConfig, context: RunContext) -> PersonaStore:
    """The persona store, with its tables; a :class:`UserError` (one line, exit 2) when it
    cannot be opened or written (a read-only home, a full disk, a wrong URL)."""
    url = store_url(config, context)
    store = None
    try:
        store = PersonaStore(url)
        store.create_schema()
        store.prune_claims()  # a write: an unwritable store fails here, at start
    except (OSError, SQLAlchemyError) as exc:
        if store is not None:
            store.dispose()
        where = "frontend.store_url" if config.store_url else f"{context.home.state} (under home)"
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
        raise UserError(
            f"The bot's store cannot be opened for writing ({type(exc).__name__}: {detail}); check {where}: "
            "it must be a writable directory (or a reachable database)."
        ) from None
    return store


def build_runtime(
    config: BoltConfig,
    context: RunContext,
    engine: Engine,
    *,
    bot_token: str | None,
    signing_secret: str | None,
    oauth: OAuthCredentials | None = None,
    store: PersonaStore | None = None,
    training_steps: Callable[[], TrainingSteps] | None = None,
) -> BoltRuntime:
    if store is None:
        store = open_store(config, context)
    else:
        store.create_schema()
        store.prune_claims()
    launch = detached_launch(context) if training_steps is None else None
    if launch is None:
        interrupted = store.fail_interrupted()
    else:  # runs elsewhere: only those that cannot still be running are dead
        interrupted = store.fail_interrupted(DETACHED_RUN_LOST, older_than=DETACHED_RUN_MAX)
    if interrupted:
        log.warning("%d training run(s) were interrupted; marked failed", interrupted)

    make_client = client_factory(config)
    client = make_client(bot_token)  # the App's; with OAuth it has no token (each team its own)
    oauth_parts = None
    if oauth is not None:
        oauth_parts = build_oauth(
            config, store, client_id=oauth.client_id, client_secret=oauth.client_secret, client=client
        )
        clients = TeamClients(
            make_client,
            installations=oauth_parts.installations,
            rotator=token_rotator(oauth_parts.settings),
        )
    else:
        clients = TeamClients(make_client, single=client)
    # One bot token: verified once here. OAuth: each install's token was checked at install.
    identity = (
        verify_token(client, config.startup_auth_attempts, config.api_retry_backoff) if bot_token else {}
    )
    directory = MemberDirectory(clients)
    if isinstance(identity.get("team_id"), str):
        directory.warm(identity["team_id"])  # so no /doppel ack waits for users.list
    chooser = PersonaChooser(
        store, engine, directory, resolve_command_line_persona(context.persona, context.home, engine)
    )
    chooser.adopt_command_line_persona()
    replier = MentionReplier(
        store=store,
        engine=engine,
        clients=clients,
        chooser=chooser,
        directory=directory,
        channels=ChannelDirectory(clients),
        avatars=Avatars(config.avatar, context.home, directory, config.public_url),
        settings=ReplySettings(config.max_message_chars, config.max_thread_messages, config.answer_dms),
        jobs=JobSettings(
            workers=config.reply_workers,
            queue_max=config.reply_queue_max,
            max_age_s=config.reply_max_age_s,
            lease_s=config.reply_lease_s,
            ack_wait_s=config.ack_store_wait_s,
            replies_per_minute=config.replies_per_minute,
        ),
    )

    responses = ResponseUrls(timeout_s=config.api_timeout)

    def notify(team: str, channel: str, text: str, response_url: str = "") -> None:
        if response_url and responses.send(response_url, text):
            return  # where the command was typed; else (used up, expired, failing) in its channel
        post_messages(clients(team), channel, "", [text], Identity(SYSTEM_USERNAME))

    training = TrainingRunner(store, training_steps or (lambda: PipelineSteps(context)), notify, launch)
    forgetting = Forgetting(context.hook, context.home)
    commands = DoppelCommands(
        store=store,
        engine=engine,
        directory=directory,
        chooser=chooser,
        home=context.home,
        forgetting=forgetting,
        training=training,
        persona_limit=config.persona_limit,
        training_limit=config.training_limit,
        permissions=config.permissions,
    )
    consents = ConsentStore(store)
    consents.create_schema()
    commands.consent = ConsentGate(
        mode=config.consent,
        consents=consents,
        clients=clients,
        start=commands.start_training,
        forget=commands.forget_person,
        notify=notify,
        label=commands.directory.label,
    )
    eraser = WorkspaceEraser(
        store,
        forgetting,
        clients,
        installations=oauth_parts.installations if oauth_parts else None,
        stop_training=training.cancel_team,
        erase_rows=[consents.delete_team],
    )
    eraser.remember_bot(identity.get("user_id"), identity.get("bot_id"))
    parts = BotParts(store=store, replier=replier, commands=commands, eraser=eraser, home=context.home)
    app = build_app(
        parts,
        client=client,
        signing_secret=signing_secret,
        auth_test=identity or None,
        oauth_settings=oauth_parts.settings if oauth_parts else None,
    )
    replier.jobs.start()  # also finishes jobs an earlier run left unfinished
    return BoltRuntime(app, parts, client, config, chooser, training, clients, oauth_parts)
