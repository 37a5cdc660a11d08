"""Thread → examples: runs, min_length, what never appears, context budget, provenance."""

from __future__ import annotations

from typing import Any

import pytest

from doppelkit.builtins.formatters import REPLY_SEPARATOR, AlpacaFormatter, ChatFormatter, split_reply
from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, Example, Thread
from doppelkit.testing.samples import ANN, BOB, BOT, PERSONA_ID, message, sample_persona, sample_thread

FORMATTERS = [ChatFormatter, AlpacaFormatter]


def make(formatter_cls: Any, context: RunContext, **options: Any) -> Any:
    return formatter_cls(formatter_cls.Config(**options), context)


def run(formatter: Any, thread: Thread | None = None) -> tuple[list[Example], DatasetReport]:
    report = DatasetReport()
    return list(formatter.examples(thread or sample_thread(), sample_persona(), report)), report


def thread_of(*messages: Any) -> Thread:
    return Thread(
        team="T0TEST",
        channel="C0X",
        channel_name="x",
        ts=messages[0].ts,
        messages=list(messages),
        user_labels={ANN: "Ann", BOB: "Bob", BOT: "deploybot"},
    )


@pytest.mark.parametrize("formatter_cls", FORMATTERS)
def test_each_long_enough_persona_run_is_one_example(formatter_cls: Any, run_context: RunContext) -> None:
    examples, report = run(make(formatter_cls, run_context))
    assert [ex.meta["message_ts"] for ex in examples] == [
        ["103.000000", "104.000000"],
        ["108.000000"],
    ]
    assert examples[0].response == (
        "yes, it went out an hour ago, see the run (https://ci.example.com/42)"
        + REPLY_SEPARATOR
        + "everything is green & the error rate is flat :tada:"
    )
    assert report.candidate_persona_messages == 4
    assert report.drops == {"system_event": 1, "bot": 1, "too_short": 1}


@pytest.mark.parametrize("formatter_cls", FORMATTERS)
def test_min_length_counts_the_whole_run(formatter_cls: Any, run_context: RunContext) -> None:
    thread = thread_of(
        message(1, ANN, "question?"),
        message(2, PERSONA_ID, "a" * 10),
        message(3, PERSONA_ID, "b" * 10),
        message(4, ANN, "next?"),
        message(5, PERSONA_ID, "c" * 19),
    )
    examples, report = run(make(formatter_cls, run_context, min_length=20), thread)
    assert [ex.response for ex in examples] == ["a" * 10 + REPLY_SEPARATOR + "b" * 10]
    assert report.drops["too_short"] == 1
    for ex in examples:
        assert all(len(part) for part in split_reply(ex.response))
        assert len(ex.response) >= 20


@pytest.mark.parametrize("formatter_cls", FORMATTERS)
def test_join_and_bot_text_never_appear(formatter_cls: Any, run_context: RunContext) -> None:
    examples, _ = run(make(formatter_cls, run_context))
    for ex in examples:
        for msg in ex.messages:
            assert "has joined" not in msg.content
            assert "SECRET BOT TEXT" not in msg.content


def test_other_bots_can_be_context_but_never_the_persona(run_context: RunContext) -> None:
    examples, _ = run(make(ChatFormatter, run_context, include_bots=True))
    first_prompt = examples[0].messages[1].content
    assert "deploybot: Deploy #42 finished" in first_prompt
    for ex in examples:
        assert all("Deploy #42" not in m.content for m in ex.messages if m.role == "assistant")


@pytest.mark.parametrize("formatter_cls", FORMATTERS)
def test_every_assistant_turn_is_a_qualifying_persona_reply(
    formatter_cls: Any, run_context: RunContext
) -> None:
    formatter = make(formatter_cls, run_context, min_length=40)
    examples, _ = run(formatter)
    persona_texts = {ex.response for ex in examples}
    for ex in examples:
        assert ex.messages[-1].role == "assistant"
        for msg in ex.messages:
            if msg.role == "assistant":
                assert msg.content in persona_texts
                assert len(msg.content) >= 40


def test_chat_turns_alternate_and_short_persona_runs_are_transcript(run_context: RunContext) -> None:
    examples, _ = run(make(ChatFormatter, run_context))
    last = examples[-1]
    assert [m.role for m in last.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert last.messages[0].content.startswith("You are Erik")
    assert last.messages[3].content == (
        "Bob: nice! any gotchas for the migration?\nErik: ok\nAnn: @Erik what about the migration itself?"
    )
    assert last.messages[2].content == examples[0].response


@pytest.mark.parametrize("formatter_cls", FORMATTERS)
def test_meta_records_provenance(formatter_cls: Any, run_context: RunContext) -> None:
    examples, _ = run(make(formatter_cls, run_context))
    meta = examples[0].meta
    assert meta["team"] == "T0TEST"
    assert meta["channel"] == "C0GENERAL"
    assert meta["channel_name"] == "general"
    assert meta["thread_ts"] == "100.000000"
    assert meta["persona_id"] == PERSONA_ID
    assert meta["formatter"] == formatter_cls.name
    assert meta["thread_kind"] == "thread"


def test_mentions_of_the_persona_and_of_the_bot_read_the_same(run_context: RunContext) -> None:
    formatter = make(ChatFormatter, run_context)
    persona = sample_persona()
    trained = thread_of(message(1, ANN, f"<@{PERSONA_ID}> thoughts?"))
    served = thread_of(message(1, ANN, "<@U0SERVINGBOT> thoughts?"))
    a = formatter.conversation(trained, persona)
    b = formatter.conversation(served, persona, bot_user_id="U0SERVINGBOT")
    assert a == b
    assert a[-1].content == "Ann: @Erik thoughts?"
    unnormalised = formatter.conversation(served, persona)
    assert unnormalised[-1].content == "Ann: @U0SERVINGBOT thoughts?"


def test_unknown_users_are_shown_by_id(run_context: RunContext) -> None:
    formatter = make(ChatFormatter, run_context)
    thread = thread_of(message(1, "U0STRANGER", "hi <@U0OTHER|old name> and <@U0NOBODY>"))
    assert formatter.conversation(thread, sample_persona())[-1].content == (
        "U0STRANGER: hi @old name and @U0NOBODY"
    )


def test_a_thread_the_persona_opened_starts_with_the_empty_context_turn(run_context: RunContext) -> None:
    thread = thread_of(
        message(1, PERSONA_ID, "I'm thinking of rewriting the scheduler in Rust, thoughts?"),
        message(2, ANN, "please no"),
        message(3, PERSONA_ID, "fine, fine, we'll keep the Python one for another quarter"),
    )
    examples, _ = run(make(ChatFormatter, run_context, min_length=20, empty_context_text="(new)"), thread)
    assert [m.role for m in examples[0].messages] == ["system", "user", "assistant"]
    assert examples[0].messages[1].content == "(new)"
    assert [m.content for m in examples[1].messages[1:3]] == ["(new)", examples[0].response]


def test_context_keeps_the_most_recent_messages_within_max_context_messages(run_context: RunContext) -> None:
    thread = thread_of(*[message(i, ANN, f"line {i}") for i in range(10)], message(10, PERSONA_ID, "x" * 50))
    examples, _ = run(make(ChatFormatter, run_context, max_context_messages=3), thread)
    assert examples[0].messages[1].content == "Ann: line 7\nAnn: line 8\nAnn: line 9"
    assert examples[0].meta["context_messages"] == 3


def test_context_keeps_the_most_recent_messages_within_max_context_chars(run_context: RunContext) -> None:
    thread = thread_of(*[message(i, ANN, f"line {i}") for i in range(10)], message(10, PERSONA_ID, "x" * 50))
    # each line renders as "Ann: line N" (11 characters) + 1 for the newline
    examples, _ = run(make(ChatFormatter, run_context, max_context_chars=36), thread)
    assert examples[0].messages[1].content == "Ann: line 7\nAnn: line 8\nAnn: line 9"
    examples, _ = run(make(ChatFormatter, run_context, max_context_chars=35), thread)
    assert examples[0].messages[1].content == "Ann: line 8\nAnn: line 9"


def test_a_message_longer_than_the_budget_keeps_its_tail(run_context: RunContext) -> None:
    thread = thread_of(message(1, ANN, "head " + "y" * 100 + " tail"), message(2, PERSONA_ID, "x" * 50))
    examples, _ = run(make(ChatFormatter, run_context, max_context_chars=30), thread)
    context = examples[0].messages[1].content
    assert context.startswith("Ann: …") and context.endswith(" tail")
    assert len(context) <= 30


def test_a_cut_window_does_not_start_with_an_assistant_turn(run_context: RunContext) -> None:
    thread = thread_of(
        message(1, ANN, "first question"),
        message(2, PERSONA_ID, "a long enough first answer from the persona"),
        message(3, BOB, "second question"),
        message(4, PERSONA_ID, "a long enough second answer from the persona"),
    )
    examples, _ = run(make(ChatFormatter, run_context, max_context_messages=2, min_length=10), thread)
    assert [m.role for m in examples[1].messages] == ["system", "user", "assistant"]
    assert examples[1].messages[1].content == "Bob: second question"


def test_zero_budget_means_no_context(run_context: RunContext) -> None:
    examples, _ = run(make(ChatFormatter, run_context, max_context_chars=0, empty_context_text="(none)"))
    assert [m.content for m in examples[-1].messages[1:-1]] == ["(none)"]


def test_split_reply_undoes_the_separator_and_tolerates_drift() -> None:
    assert split_reply("one" + REPLY_SEPARATOR + "two") == ["one", "two"]
    assert split_reply("one\n---\ntwo\n \n---  \n\nthree") == ["one", "two", "three"]
    assert split_reply("no separator -- here --- really") == ["no separator -- here --- really"]
    assert split_reply("  \n---\n  ") == []
    # A generated reply may open or close with the separator (a stray "---" was posted once).
    assert split_reply("---\n\nhello") == ["hello"]
    assert split_reply("hello\n\n---") == ["hello"]


def test_bots_flagged_as_the_persona_are_still_bots(run_context: RunContext) -> None:
    thread = thread_of(
        message(1, ANN, "q?"), message(2, PERSONA_ID, "x" * 60, is_bot=True, subtype="bot_message")
    )
    examples, report = run(make(ChatFormatter, run_context), thread)
    assert examples == []
    assert report.candidate_persona_messages == 0


def test_a_bot_id_message_has_no_speaker_id(run_context: RunContext) -> None:
    thread = thread_of(
        message(1, None, "build failed", is_bot=True, subtype="bot_message"),
        message(2, BOT, "hello", is_bot=True),
        message(3, PERSONA_ID, "x" * 60),
    )
    examples, _ = run(make(ChatFormatter, run_context, include_bots=True), thread)
    assert examples[0].messages[1].content == "bot: build failed\ndeploybot: hello"
