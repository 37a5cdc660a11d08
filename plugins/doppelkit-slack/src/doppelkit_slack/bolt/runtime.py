"""Assembling the bot: store, Web API client, persona chooser, replier, commands, Bolt app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient

from doppelkit.interfaces import Engine, RunContext
from doppelkit_slack.bolt.app import BotParts, build_app
from doppelkit_slack.bolt.avatar import Avatars
from doppelkit_slack.bolt.commands import DoppelCommands
from doppelkit_slack.bolt.frontend import BoltConfig
from doppelkit_slack.bolt.mentions import SYSTEM_USERNAME, MentionReplier, ReplySettings
from doppelkit_slack.bolt.personas import MemberDirectory, PersonaChooser, resolve_command_line_persona
from doppelkit_slack.bolt.posting import Identity, post_messages
from doppelkit_slack.bolt.training import PipelineSteps, TrainingRunner, TrainingSteps
from doppelkit_slack.bolt.webapi import web_client
from doppelkit_slack.store import PersonaStore, default_url

log = logging.getLogger("doppelkit.bolt")


@dataclass
class BoltRuntime:
    app: App
    parts: BotParts
    client: WebClient
    config: BoltConfig
    chooser: PersonaChooser
    training: TrainingRunner

    def close(self, wait: bool = False) -> None:
        self.parts.replier.shutdown(wait=wait)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Tests and benchmarks: wait until every queued reply is done."""
        from concurrent.futures import wait

        wait(list(self.parts.replier.pending), timeout=timeout)


def store_url(context: RunContext) -> str:
    settings = getattr(context.settings, "settings", None)
    url = getattr(getattr(settings, "store", None), "url", None)
    return url or default_url(context.home.state)


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
    store = store or PersonaStore(store_url(context))
    store.create_schema()
    if interrupted := store.fail_interrupted():
        log.warning("%d training run(s) were interrupted by a restart; marked failed", interrupted)
    store.prune_claims()
    client = web_client(
        bot_token,
        config.api_url,
        retries=config.api_retries,
        backoff=config.api_retry_backoff,
        timeout=config.api_timeout,
    )
    directory = MemberDirectory(client)
    chooser = PersonaChooser(
        store, engine, directory, resolve_command_line_persona(context.persona, context.home)
    )
    chooser.adopt_command_line_persona()
    replier = MentionReplier(
        store=store,
        engine=engine,
        client=client,
        chooser=chooser,
        directory=directory,
        avatars=Avatars(config.avatar, context.home, directory, config.public_url),
        settings=ReplySettings(config.max_message_chars, config.max_thread_messages, config.answer_dms),
        workers=config.reply_workers,
    )

    def notify(team: str, channel: str, text: str) -> None:
        post_messages(client, channel, "", [text], Identity(SYSTEM_USERNAME))

    training = TrainingRunner(store, training_steps or (lambda: PipelineSteps(context)), notify)
    commands = DoppelCommands(
        store=store,
        engine=engine,
        directory=directory,
        chooser=chooser,
        home=context.home,
        training=training,
        persona_limit=config.persona_limit,
    )
    parts = BotParts(store=store, replier=replier, commands=commands, home=context.home)
    app = build_app(parts, client=client, signing_secret=signing_secret)
    return BoltRuntime(app, parts, client, config, chooser, training)
