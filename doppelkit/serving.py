"""What every engine shares, whichever library decodes: generation settings, the prompt of a
persona (built by the formatter its adapter was trained with), where a reply ends and how it
splits into messages.

An engine plugin (``peft``, ``vllm``, a third party's) imports these instead of writing its own,
so the same persona gives the same prompt and the same reply boundaries on every engine.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from doppelkit.artifacts import TINY_BASE
from doppelkit.builtins.formatters.turns import split_reply
from doppelkit.errors import PersonaError
from doppelkit.interfaces import Formatter, RunContext
from doppelkit.models import AdapterManifest, ChatMessage, Persona, Thread
from doppelkit.reply_text import ReplyCutter

__all__ = [
    "GenerationConfig",
    "PersonaFormatters",
    "ReplyCutter",
    "ReplyText",
    "as_trained",
    "base_mismatch_message",
    "decoder",
    "fit_prompt",
    "other_speakers",
    "persona_conversation",
    "prompt_ids",
    "reply_cutter",
    "serve_offline",
    "split_messages",
    "split_reply",
    "stop_token_ids",
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


def prompt_ids(formatter: Formatter, messages: list[ChatMessage], tokenizer: Any) -> list[int]:
    """The prompt's token IDs, as training saw them: rendered by the persona's formatter,
    tokenised without adding special tokens (the rendered text already carries BOS)."""
    return list(tokenizer.encode(formatter.render_prompt(messages, tokenizer), add_special_tokens=False))


def fit_prompt(ids: Sequence[int], max_positions: int | None, max_new_tokens: int) -> list[int]:
    """``ids`` cut from the left so prompt and reply fit ``max_positions`` (the model's length)."""
    if max_positions is None:
        return list(ids)
    room = max(1, max_positions - max_new_tokens)
    return list(ids[-room:])


def stop_token_ids(tokenizer: Any) -> frozenset[int]:
    """Tokens that end a reply: EOS and every other special token (role markers, BOS, pad).

    A chat reply never contains one, and a model that emits one (``<|user|>``,
    ``<|start_header_id|>``) is starting another turn. Added tokens marked special count too:
    ``all_special_ids`` lists only the named ones.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", []) if i != unk}
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids |= {int(i) for i, token in added.items() if getattr(token, "special", False) and i != unk}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def decoder(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """Token IDs → reply text, the same way on every engine (special tokens dropped)."""

    def decode_ids(ids: Sequence[int]) -> str:
        return str(tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))

    return decode_ids


class ReplyText:
    """One reply as its tokens arrive: the text to show next, never taken back, and when it ends.

    Every engine feeds it the generated token IDs (``add``) and shows what it returns, so a
    stream is cut at the same place whichever library decodes.
    """

    def __init__(self, cutter: ReplyCutter, decode_ids: Callable[[Sequence[int]], str]) -> None:
        self.cutter, self.decode_ids = cutter, decode_ids
        self.ids: list[int] = []
        self.shown = ""

    def add(self, ids: Sequence[int]) -> tuple[str, bool]:
        """(new text to show, whether the reply has ended) after ``ids`` were generated."""
        self.ids.extend(ids)
        cut = self.cutter.update(self.decode_ids(self.ids))
        return self._new(cut.text), cut.done

    def finish(self) -> str:
        """The rest of the text once generation stopped (EOS, token limit)."""
        return self._new(self.cutter.update(self.decode_ids(self.ids), finished=True).text)

    def _new(self, text: str) -> str:
        # The cutter only ever extends what it showed; guard anyway so a stream never repeats.
        if len(text) > len(self.shown) and text.startswith(self.shown):
            new, self.shown = text[len(self.shown) :], text
            return new
        return ""


def serve_offline() -> None:
    """Set ``HF_HUB_OFFLINE=1``: serving never downloads anything.

    ``huggingface_hub`` reads the variable once at import, so an already imported module is
    switched too.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def _describe_base(identity: tuple[str, str | None]) -> str:
    name, revision = identity
    return f"{name}@{revision}" if revision else name


def base_mismatch_message(manifest: AdapterManifest, serving: tuple[str, str | None], loaded_for: str) -> str:
    """Why a persona cannot be served next to the others (an engine serves one base model,
    ``serving`` = (base_model, model_revision), loaded for ``loaded_for``), and how to fix it."""
    wanted = _describe_base((manifest.base_model, manifest.model_revision))
    how = f"`doppelkit persona.user={manifest.persona_id}` (ingest + train) for each persona"
    if manifest.base_model == serving[0] == TINY_BASE:
        # Tiny bases differ when the workspace text differed: a newer export, other settings.
        how += ", all from the same workspace export and settings (the tiny base is built from them)"
    return (
        f"{manifest.persona_name} ({manifest.persona_id}) was trained on base model {wanted}, but "
        f"this engine serves {_describe_base(serving)} (the base of {loaded_for}); "
        f"one process serves one base model. Retrain the personas so that they share one base: "
        f"{how}; or serve them from separate processes."
    )


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
