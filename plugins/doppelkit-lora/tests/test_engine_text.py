"""Where a reply ends while it streams: stop sequences, other speakers, the persona's own tag."""

from __future__ import annotations

import pytest

from doppelkit.reply_text import ReplyCutter


def stream(cutter: ReplyCutter, text: str, step: int = 1) -> tuple[list[str], str]:
    """Feed ``text`` a few characters at a time, as tokens arrive: (chunks shown, final reply)."""
    shown, chunks = "", []
    for end in range(step, len(text) + step, step):
        cut = cutter.update(text[:end])
        assert cut.text.startswith(shown), "text already shown is never taken back"
        if len(cut.text) > len(shown):
            chunks.append(cut.text[len(shown) :])
            shown = cut.text
        if cut.done:
            return chunks, cut.text
    final = cutter.update(text, finished=True)
    assert final.text.startswith(shown)
    if len(final.text) > len(shown):
        chunks.append(final.text[len(shown) :])
    return chunks, final.text


@pytest.mark.parametrize("step", [1, 2, 5])
def test_stop_sequence_ends_the_reply_and_never_shows(step: int) -> None:
    chunks, final = stream(ReplyCutter(stop=["###"]), "all green so far ### Ann: ok", step)
    assert final == "all green so far"
    assert "".join(chunks) == final


@pytest.mark.parametrize("step", [1, 3])
def test_a_line_speaking_as_someone_else_is_cut(step: int) -> None:
    cutter = ReplyCutter(other_speakers=["Ann", "Bob Smith"], persona_label="maya")
    chunks, final = stream(cutter, "on it!\nAnnual report is done\nBob Smith: thanks maya", step)
    assert final == "on it!\nAnnual report is done"
    assert "".join(chunks) == final


def test_another_speaker_right_at_the_start_leaves_no_reply() -> None:
    cut = ReplyCutter(other_speakers=["Ann"]).update("Ann: hello?", finished=False)
    assert cut.done and cut.text == ""


def test_the_personas_own_tag_is_removed() -> None:
    cutter = ReplyCutter(other_speakers=["Ann"], persona_label="maya")
    chunks, final = stream(cutter, "maya: sure, at noon")
    assert final == "sure, at noon" and "".join(chunks) == final
    assert ReplyCutter(persona_label="maya").update("may", finished=True).text == "may"


def test_trailing_whitespace_and_half_characters_wait() -> None:
    cutter = ReplyCutter()
    assert cutter.update("hello ").text == "hello"
    assert cutter.update("hello wor\ufffd").text == "hello wor"
    assert cutter.update("  hello\n\n", finished=True).text == "hello"


def test_the_reply_separator_survives_streaming() -> None:
    text = "yep shipped it\n\n---\n\nall green"
    chunks, final = stream(ReplyCutter(other_speakers=["Ann"]), text)
    assert final == text and "".join(chunks) == text


def test_report_samples_are_cut_as_the_engine_serves_them() -> None:
    """The persona report shows what would be posted: no leading own tag, no other speaker."""
    from doppelkit.models import ChatMessage
    from doppelkit_lora.decoding.generation import served_cutter

    prompt = [
        ChatMessage(role="system", content="You are maya."),
        ChatMessage(role="user", content="Ann Lee: did the deploy go out?\nBob: and CI?"),
    ]
    cutter = served_cutter(prompt, "maya")
    assert cutter.update("maya: yep, shipped\nAnn Lee: thanks!", finished=True).text == "yep, shipped"
    assert cutter.update("all green\nBob: nice", finished=True).text == "all green"
