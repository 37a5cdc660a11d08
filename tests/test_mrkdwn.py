"""Slack mrkdwn cleanup (training and serving share it)."""

from __future__ import annotations

import pytest

from doppelkit.mrkdwn import clean, escape, mentioned_user_ids, unescape

USERS = {"U123": "Ann Lee", "W9": "Bob"}


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("hi <@U123>", "hi @Ann Lee"),
        ("hi <@U123|ann>", "hi @Ann Lee"),
        ("hi <@U777|old_name>", "hi @old_name"),
        ("hi <@U777>", "hi @U777"),
        ("enterprise <@W9>", "enterprise @Bob"),
        ("see <#C024BE7LR|general>", "see #general"),
        ("see <#C024BE7LR>", "see #C024BE7LR"),
        ("<!here> <!channel> <!everyone>", "@here @channel @everyone"),
        ("<!here|here> ping", "@here ping"),
        ("<!subteam^S012|@devs> please", "@devs please"),
        ("<!subteam^S012>", "@S012"),
        ("at <!date^1392734382^{date_short}|Feb 18, 2014>", "at Feb 18, 2014"),
        ("read <https://x.io/docs|the docs>", "read the docs (https://x.io/docs)"),
        ("read <https://x.io/docs|x.io/docs>", "read x.io/docs"),
        ("read <https://x.io/docs|https://x.io/docs>", "read https://x.io/docs"),
        ("read <https://x.io/docs>", "read https://x.io/docs"),
        ("mail <mailto:a@b.io|a@b.io>", "mail a@b.io"),
        ("mail <mailto:a@b.io>", "mail a@b.io"),
        ("mail <mailto:a@b.io|Ann>", "mail Ann (a@b.io)"),
        ("call <tel:5001000|500-1000>", "call 500-1000"),
        ("call <tel:+14155550100|+1 (415) 555-0100>", "call +1 (415) 555-0100"),
        ("call <tel:5001000>", "call 5001000"),
        ("<http://example.com/docs/|example.com/docs>", "example.com/docs"),
        ("<https://x.io/Stra%C3%9Fe|x.io/Straße>", "x.io/Straße"),
        ("<https://x.io/a%20b|https://x.io/a b>", "https://x.io/a b"),
        ("<https://x.io/a|x.io/b>", "x.io/b (https://x.io/a)"),
        ("<https://x.io/?a=1&amp;b=2|Q &amp; A>", "Q & A (https://x.io/?a=1&b=2)"),
        ("a &lt; b &gt; c &amp; d", "a < b > c & d"),
        ("literal &amp;lt; stays", "literal &lt; stays"),
        ("nice :tada: :+1::skin-tone-2:", "nice :tada: :+1::skin-tone-2:"),
        ("*bold* _it_ ~strike~ `code`", "*bold* _it_ ~strike~ `code`"),
        ("```\nif a &lt; b:\n```", "```\nif a < b:\n```"),
        ("no markup at all", "no markup at all"),
    ],
)
def test_clean(raw: str, cleaned: str) -> None:
    assert clean(raw, USERS) == cleaned


def test_channel_labels_can_be_given() -> None:
    assert clean("in <#C1>", channels={"C1": "random"}) == "in #random"


def test_inserted_names_are_not_unescaped_again() -> None:
    assert clean("<@U1>", {"U1": "Tom &amp; Jerry"}) == "@Tom &amp; Jerry"


def test_escape_makes_model_output_inert_and_round_trips() -> None:
    text = "<!channel> hey <@U123> & <https://evil.example|click>"
    escaped = escape(text)
    assert "<" not in escaped and ">" not in escaped
    assert unescape(escaped) == text
    assert clean(escaped) == text


def test_mentioned_user_ids() -> None:
    assert list(mentioned_user_ids("<@U1> <@W2|bob> <#C3> <!here> <@B4>")) == ["U1", "W2", "B4"]
