"""Assembling the bot: store, Web API client, persona chooser, replier, commands, Bolt app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from slack_bolt import App
from slack_sdk import WebClient

from doppelkit.interfaces import Engine, RunContext
from doppelkit.models import Persona
from doppelkit_slack.bolt.app import BotParts, build_app
from doppelkit_slack.bolt.avatar import Avatars
from doppelkit_slack.bolt.commands import DoppelCommands
from doppelkit_slack.bolt.config import MAX_RETRY_AFTER_S, BoltConfig
from doppelkit_slack.bolt.forgetting import Forgetting
from doppelkit_slack.bolt.mentions import SYSTEM_USERNAME, MentionReplier, ReplySettings
from doppelkit_slack.bolt.personas import (
    ChannelDirectory,
    MemberDirectory,
    PersonaChooser,
    resolve_command_line_persona,
)
from doppelkit_slack.bolt.posting import Identity, post_messages
from doppelkit_slack.bolt.training import Launch, PipelineSteps, TrainingRunner, TrainingSteps, train_detached
from doppelkit_slack.bolt.uninstall import WorkspaceEraser
from doppelkit_slack.store import PersonaStore, default_url
from doppelkit_slack.webclient import web_client

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


def build_runtime(
    config: BoltConfig,
    context: RunContext,
    engine: Engine,
    *,
    bot_token: str,
    signing_secret: str | None,
    store: PersonaStore | None = None,
    training_steps: Callable[[], TrainingSteps] | None = None,
) -> BoltRuntime:
    store = store or PersonaStore(store_url(config, context))
    store.create_schema()
    launch = detached_launch(context) if training_steps is None else None
    if launch is None:
        interrupted = store.fail_interrupted()
    else:  # runs elsewhere: only those that cannot still be running are dead
        interrupted = store.fail_interrupted(DETACHED_RUN_LOST, older_than=DETACHED_RUN_MAX)
    if interrupted:
        log.warning("%d training run(s) were interrupted; marked failed", interrupted)
    store.prune_claims()
    client = web_client(
        bot_token,
        config.api_url,
        max_retries=config.api_retries,
        backoff_s=config.api_retry_backoff,
        max_retry_after_s=MAX_RETRY_AFTER_S,
        timeout_s=config.api_timeout,
    )
    directory = MemberDirectory(client)
    chooser = PersonaChooser(
        store, engine, directory, resolve_command_line_persona(context.persona, context.home, engine)
    )
    chooser.adopt_command_line_persona()
    replier = MentionReplier(
        store=store,
        engine=engine,
        client=client,
        chooser=chooser,
        directory=directory,
        channels=ChannelDirectory(client),
        avatars=Avatars(config.avatar, context.home, directory, config.public_url),
        settings=ReplySettings(config.max_message_chars, config.max_thread_messages, config.answer_dms),
        workers=config.reply_workers,
    )

    def notify(team: str, channel: str, text: str) -> None:
        post_messages(client, channel, "", [text], Identity(SYSTEM_USERNAME))

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
    )
    eraser = WorkspaceEraser(store, forgetting, client)
    parts = BotParts(store=store, replier=replier, commands=commands, eraser=eraser, home=context.home)
    app = build_app(parts, client=client, signing_secret=signing_secret)
    return BoltRuntime(app, parts, client, config, chooser, training)
