"""What every engine shares, whichever library decodes: generation settings, the prompt of a
persona (built by the formatter its adapter was trained with), where a reply ends and how it
splits into messages.

An engine plugin (``peft``, ``vllm``, a third party's) imports these instead of writing its own,
so the same persona gives the same prompt and the same reply boundaries on every engine.
"""

from __future__ import annotations

import inspect
import json
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from doppelkit.builtins.formatters.turns import split_reply
from doppelkit.errors import PersonaError
from doppelkit.interfaces import Formatter, RunContext
from doppelkit.models import AdapterManifest, ChatMessage, Persona, Thread
from doppelkit.reply_text import ReplyCutter

__all__ = [
    "GenerationConfig",
    "PersonaFormatters",
    "ReplyCutter",
    "as_trained",
    "other_speakers",
    "persona_conversation",
    "reply_cutter",
    "split_reply",
]

# Formatter keys that earlier versions kept in the formatter section (now ``dataset.*``):
# manifests written then still carry them, and they never changed a prompt.
_RETIRED_FORMATTER_KEYS = ("eval_fraction", "session_gap_minutes")


class GenerationConfig(BaseModel):
    """How a persona's reply is sampled (``engine.*``); every engine's ``Config`` has these."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0, description="0 = greedy")
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(50, ge=0, description="0 = off")
    max_new_tokens: int = Field(200, ge=1)
    repetition_penalty: float = Field(1.1, gt=0)
    stop: list[str] = Field(default_factory=list, description="strings that end a reply (not included)")
    seed: int | None = Field(None, description="fixed sampling seed (repeatable replies); null = random")


SLACK = "Slack"  # the platform of personas trained before manifests recorded one


def as_trained(thread: Thread, manifest: AdapterManifest) -> Thread:
    """``thread`` on the platform the persona was trained on (the manifest's), so the system
    prompt names it exactly as the training examples did."""
    platform = SLACK if manifest.platform is None else manifest.platform
    return thread if thread.platform == platform else thread.model_copy(update={"platform": platform})


def persona_conversation(
    formatter: Formatter, thread: Thread, persona: Persona, bot_user_id: str | None
) -> list[ChatMessage]:
    """``formatter.conversation``, passing ``bot_user_id`` to formatters that take it."""
    if bot_user_id is not None and "bot_user_id" in inspect.signature(formatter.conversation).parameters:
        return formatter.conversation(thread, persona, bot_user_id=bot_user_id)
    return formatter.conversation(thread, persona)


def other_speakers(thread: Thread, persona: Persona, bot_user_id: str | None) -> set[str]:
    """Names the persona must not start speaking as (the people in the thread but them)."""
    me = {persona.id, bot_user_id}
    names = {label for uid, label in thread.user_labels.items() if uid not in me}
    names |= {
        m.user for m in thread.messages if m.user and m.user not in me and m.user not in thread.user_labels
    }
    names.discard(persona.label)
    return names


def reply_cutter(
    config: GenerationConfig, thread: Thread, persona: Persona, bot_user_id: str | None
) -> ReplyCutter:
    """Where this persona's reply to ``thread`` ends: a stop string, or another speaker's line."""
    return ReplyCutter(config.stop, other_speakers(thread, persona, bot_user_id), persona.label)


def split_messages(formatter: Formatter, text: str) -> list[str]:
    """A whole reply as the separate messages the persona would post (maybe none)."""
    split = getattr(formatter, "split_reply", split_reply)
    return list(split(text))


class PersonaFormatters:
    """The formatter each published version was trained with, built once from the registries.

    A persona trained with ``formatter=alpaca`` or a custom system prompt is served exactly
    that prompt shape, whatever the run's own ``formatter=`` says.
    """

    def __init__(self, context: RunContext) -> None:
        if context.registries is None:
            raise ValueError(
                "an engine needs the run's registries (RunContext.registries) to build formatters"
            )
        self.context = context
        self.registries = context.registries
        self._built: dict[tuple[str, str], Formatter] = {}
        self._lock = threading.Lock()

    def for_manifest(self, manifest: AdapterManifest) -> Formatter:
        options = {k: v for k, v in manifest.formatter_config.items() if k not in _RETIRED_FORMATTER_KEYS}
        key = (manifest.formatter, json.dumps(options, sort_keys=True))
        with self._lock:
            if key not in self._built:
                self._built[key] = self._build(manifest, options)
            return self._built[key]

    def _build(self, manifest: AdapterManifest, options: dict[str, Any]) -> Formatter:
        who = f"{manifest.persona_name} ({manifest.persona_id}) {manifest.version}"
        if manifest.formatter not in self.registries.formatter:
            raise PersonaError(
                f"{who} was trained with formatter {manifest.formatter!r}, which is not installed here "
                f"(installed: {', '.join(self.registries.formatter.names())}); install its plugin."
            )
        component = self.registries.formatter.get(manifest.formatter)
        try:
            config = component.Config.model_validate(options)
        except ValueError as exc:
            raise PersonaError(
                f"{who} was trained with a {manifest.formatter} formatter config this version cannot "
                f"read ({exc}); retrain it."
            ) from None
        formatter: Formatter = component(config, self.context)
        return formatter
