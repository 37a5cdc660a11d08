"""Test helpers: a very small tiny model, a synthetic persona dataset, a fast trainer config."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from doppelkit.models import ChatMessage, Example, Persona, User
from doppelkit_lora.model.tiny import TinyModelConfig
from doppelkit_lora.train.trainer import LoraConfig

PERSONA = Persona(team="T0TEST", user=User(id="U0MAYA", display_name="maya"))
SYSTEM = "You are maya, chatting with your colleagues in your company's Slack."
OPENERS = [
    "Ann: did the deploy go out?",
    "Bob: can someone review my PR?",
    "Ann: why is CI red again",
    "Bob: lunch at noon?",
    "Ann: the staging db is slow today",
    "Bob: who owns the billing service?",
]
REPLIES = [
    "yep shipped it this morning :rocket: all green so far",
    "on it! give me ten minutes and I'll leave comments",
    "flaky test again, I'll rerun it :sweat_smile:",
    "sure!! see you at the usual place",
    "looking now, probably the nightly backfill hogging it",
    "that's me :wave: what do you need?",
]


def make_examples(n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        k = rng.randrange(len(OPENERS))
        context = [ChatMessage(role="user", content=OPENERS[k])]
        if rng.random() < 0.5:  # some longer conversations, so lengths vary as in real chat
            context.append(ChatMessage(role="user", content=OPENERS[(k + 1) % len(OPENERS)] + " asap"))
        examples.append(
            Example(
                messages=[
                    ChatMessage(role="system", content=SYSTEM),
                    *context,
                    ChatMessage(role="assistant", content=REPLIES[k] + ("" if i % 3 else " thanks")),
                ],
                meta={"thread_ts": f"{1700000000 + i}.000100", "message_ts": [f"{1700000000 + i}.000200"]},
            )
        )
    return examples


def write_jsonl(path: Path, examples: list[Example]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(e.model_dump_json() + "\n" for e in examples), encoding="utf-8")
    return path


SMALL_TINY = TinyModelConfig(
    vocab_size=320,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=256,
    pretrain_steps=15,
    pretrain_batch_size=4,
)


def fast_config(**overrides: Any) -> LoraConfig:
    values: dict[str, Any] = {
        "rank": 4,
        "alpha": 8,
        "max_steps": 6,
        "batch_size": 2,
        "max_seq_len": 128,
        "warmup": 1,
        "eval_every": 3,
        "checkpoint_every": 2,
        "report_samples": 2,
        "report_max_new_tokens": 6,
        "tiny": SMALL_TINY,
    }
    return LoraConfig(**{**values, **overrides})
