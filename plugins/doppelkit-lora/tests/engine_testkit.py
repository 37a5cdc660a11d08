"""Helpers of the engine and chat-frontend tests: a tiny base and persona adapters in seconds.

The base is a randomly initialised tiny Llama (the tiny builder's ``build_model``) with a
*word-level* tokenizer, stored where the tiny builder caches its models: every token decodes
to a whole word, so even a random model's replies are comparable text (a byte-level tokenizer
would make most of them U+FFFD). Adapters are random LoRA weights (``init_lora_weights=False``)
published through the trainer's own artifact API, so the engine reads exactly the layout
training produces. Each seed gives different weights, so personas' greedy replies differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doppelkit.home import Home
from doppelkit.models import Message, Persona, Thread, User
from doppelkit_lora.serve.engine import PeftEngine, PeftEngineConfig
from doppelkit_lora.testing.engines import (
    BASE_KEY,
    CORPUS,
    ENGINE_TINY,
    UNK,
    build_tiny_base,
    publish_random_adapter,
)

__all__ = ["BASE_KEY", "CORPUS", "ENGINE_TINY", "UNK", "build_tiny_base", "publish_random_adapter"]

TEAM = "T0TEST"
MAYA = Persona(team=TEAM, user=User(id="U0MAYA", display_name="maya"))
ERIK = Persona(team=TEAM, user=User(id="U0ERIK", display_name="erik"))
JO = Persona(team=TEAM, user=User(id="U0JO", display_name="jo"))
ANN = "U0ANN"

GREEDY = PeftEngineConfig(max_resident=2, temperature=0.0, repetition_penalty=1.0, max_new_tokens=12)


def thread(text: str, *, persona: Persona = MAYA) -> Thread:
    """A one-message thread: Ann asks the persona something."""
    return Thread(
        team=persona.team,
        channel="C0GENERAL",
        channel_name="general",
        ts="100.000000",
        messages=[Message(ts="100.000000", user=ANN, text=text)],
        user_labels={ANN: "Ann"},
    )


def adapter_dir(home: Home, persona: Persona, version: str) -> Path:
    return home.adapters(persona.team, persona.id) / version


def make_engine(home: Home, config: PeftEngineConfig = GREEDY, **context: Any) -> PeftEngine:
    """The peft engine over ``home`` on the CPU, built as ``engine=peft`` builds it."""
    from doppelkit.testing.helpers import make_context

    made = make_context(home.root, **context)
    made.device = "cpu"
    return PeftEngine(config, made)


def chat_formatter(context: Any) -> Any:
    from doppelkit.builtins.formatters import ChatFormatter

    return ChatFormatter(ChatFormatter.Config(), context)
