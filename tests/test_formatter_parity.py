"""Serve-time parity: a live thread gives byte-for-byte the prompt the persona trained on.

Stronger than the contract's check: every reply of many random threads, both formatters,
three tokenizers; the training side goes through the pipeline's scrubbing while the live side
carries the raw secrets and mentions the *bot* where training data mentioned the person.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from doppelkit.builtins.formatters import AlpacaFormatter, ChatFormatter
from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, Message, Thread
from doppelkit.pipeline import scrub_thread
from doppelkit.testing.samples import ANN, BOB, BOT, PERSONA_ID, message, sample_persona, sample_thread
from doppelkit.testing.tokenizers import build_test_tokenizer

SERVING_BOT = "U0SERVINGBOT"
WORDS = ["deploy", "migration", "rust", ":tada:", "friday", "&amp;", "&lt;ok&gt;", "review", "ship", "it"]


def random_thread(rng: random.Random, n: int) -> Thread:
    messages: list[Message] = []
    for i in range(n):
        roll = rng.random()
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14)))
        if roll < 0.4:
            messages.append(message(i, PERSONA_ID, words))
        elif roll < 0.5:
            messages.append(message(i, BOT, words, is_bot=True, subtype="bot_message"))
        elif roll < 0.55:
            messages.append(message(i, BOB, f"<@{BOB}> has joined the channel", subtype="channel_join"))
        elif roll < 0.65:
            messages.append(message(i, ANN, f"<@{PERSONA_ID}> {words}, mail me at ann@example.com"))
        else:
            messages.append(message(i, rng.choice([ANN, BOB]), words))
    return Thread(
        team="T0TEST",
        channel="C0R",
        channel_name="random",
        ts=messages[0].ts,
        messages=messages,
        user_labels={ANN: "Ann", BOB: "Bob", BOT: "deploybot"},
    )


def as_live(thread: Thread, upto_ts: str) -> Thread:
    """What the frontend sees: messages before the reply, people mentioning the bot."""
    live = []
    for m in thread.messages:
        if m.ts == upto_ts:
            break
        text = m.text.replace(f"<@{PERSONA_ID}>", f"<@{SERVING_BOT}>") if m.user != PERSONA_ID else m.text
        live.append(m.model_copy(update={"text": text}))
    return thread.model_copy(update={"messages": live})


@pytest.fixture(scope="module")
def tokenizers() -> list[Any]:
    return [
        build_test_tokenizer(),
        build_test_tokenizer(chat_template=True),
        build_test_tokenizer(add_bos=True),
    ]


@pytest.mark.parametrize("formatter_cls", [ChatFormatter, AlpacaFormatter])
@pytest.mark.parametrize(
    "options", [{}, {"max_context_messages": 4}, {"max_context_chars": 120}, {"min_length": 5}]
)
def test_every_reply_of_random_threads_has_a_byte_identical_serving_prompt(
    formatter_cls: Any, options: dict[str, Any], run_context: RunContext, tokenizers: list[Any]
) -> None:
    formatter = formatter_cls(formatter_cls.Config(**options), run_context)
    persona = sample_persona()
    rng = random.Random(1234)
    checked = 0
    for _ in range(12):
        raw = random_thread(rng, rng.randint(2, 40))
        scrubbed = scrub_thread(raw, run_context.hook, Counter())
        for example in formatter.examples(scrubbed, persona, DatasetReport()):
            live = as_live(raw, example.meta["message_ts"][0])
            served_messages = formatter.conversation(live, persona, bot_user_id=SERVING_BOT)
            assert served_messages == example.messages[:-1]
            for tokenizer in tokenizers:
                served = formatter.render_prompt(served_messages, tokenizer)
                rendered = formatter.render(example, tokenizer)
                served_ids = tokenizer.encode(served, add_special_tokens=False)
                assert rendered.input_ids[: len(served_ids)] == served_ids
                assert all(label == -100 for label in rendered.labels[: len(served_ids)])
                assert rendered.labels[len(served_ids)] != -100
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("formatter_cls", [ChatFormatter, AlpacaFormatter])
def test_secrets_in_a_live_thread_are_scrubbed_before_the_prompt(
    formatter_cls: Any, run_context: RunContext
) -> None:
    formatter = formatter_cls(formatter_cls.Config(), run_context)
    live = sample_thread().model_copy(
        update={"messages": [message(1, ANN, "token xoxb-1234567890-abcdefghij, mail bob@example.com")]}
    )
    prompt = formatter.conversation(live, sample_persona())[-1].content
    assert prompt == "Ann: token [REDACTED:slack_token], mail [REDACTED:email]"


def test_a_session_prompt_matches_the_live_channel(run_context: RunContext) -> None:
    from doppelkit.threads import group_sessions

    lone = [
        Thread(team="T0TEST", channel="C0X", ts=m.ts, messages=[m], user_labels={ANN: "Ann"})
        for m in [
            message(1, ANN, "anyone around to look at the flaky test?"),
            message(60, PERSONA_ID, "yes, looking now, I think it is the clock mock again"),
        ]
    ]
    (session,) = group_sessions(lone, gap_minutes=5)
    formatter = ChatFormatter(ChatFormatter.Config(), run_context)
    (example,) = formatter.examples(session, sample_persona(), DatasetReport())
    live = session.model_copy(update={"messages": session.messages[:1], "kind": "thread"})
    assert formatter.conversation(live, sample_persona()) == example.messages[:-1]
