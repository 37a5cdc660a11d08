"""The one Slack message parser (doppelkit_slack.messages), message by message."""

from __future__ import annotations

from typing import Any

import pytest

from doppelkit.models import DatasetReport, Message
from doppelkit_slack.messages import (
    MALFORMED,
    ChannelInfo,
    assemble_threads,
    message_text,
    parse_message,
    without_lone_surrogates,
)
from doppelkit_slack.sources.scraper import page_messages

TS = "1704100000.000100"


def parsed(raw: Any, bot_users: frozenset[str] = frozenset()) -> Message:
    message = parse_message(raw, bot_users)
    assert isinstance(message, Message), message
    assert Message.model_validate(message.model_dump()) == message  # the unvalidated build is sound
    return message


def test_a_plain_message() -> None:
    message = parsed({"type": "message", "ts": TS, "user": "U1", "text": "hi <@U2>", "edited": {"ts": "1"}})
    assert message == Message(ts=TS, user="U1", text="hi <@U2>", edited=True)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"ts": TS, "user": "U1", "subtype": "channel_join", "text": "joined"}, "channel_join"),
        ({"ts": TS, "user": "USLACKBOT", "subtype": "tombstone", "hidden": True}, "deleted"),
        ({"ts": TS, "user": "U1", "text": "secret", "hidden": True}, "hidden"),
        ({"ts": "soon", "user": "U1", "text": "x"}, MALFORMED),
        ({"ts": "inf", "user": "U1", "text": "x"}, MALFORMED),
        ({"user": "U1", "text": "no ts"}, MALFORMED),
        ({"ts": TS, "user": "U1", "subtype": ["odd"]}, MALFORMED),
        ("not a message", MALFORMED),
    ],
)
def test_what_is_dropped_and_why(raw: Any, reason: str) -> None:
    assert parse_message(raw) == reason


def test_bots_are_filed_under_their_bot_id_with_their_attachment_words() -> None:
    integration = parsed(
        {
            "ts": TS,
            "subtype": "bot_message",
            "bot_id": "B9CI",
            "text": "",
            "attachments": [{"fallback": "ok"}],
        }
    )
    assert (integration.user, integration.is_bot, integration.text) == ("B9CI", True, "ok")
    slackbot = parsed({"ts": TS, "user": "USLACKBOT", "text": "reminder"})  # never listed as a bot
    assert (slackbot.user, slackbot.is_bot) == (None, True)
    bot_user = parsed({"ts": TS, "user": "U3BOT", "text": "beep"}, frozenset({"U3BOT"}))
    assert (bot_user.user, bot_user.is_bot) == (None, True)
    person = parsed({"ts": TS, "user": "U1", "text": "", "attachments": [{"text": "unfurl"}]})
    assert person.text == "" and not person.is_bot  # a person's link preview is not their words


def test_text_from_blocks_broadcasts_and_files() -> None:
    blocks = [{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
        {"type": "text", "text": "see "},
        {"type": "link", "url": "https://x.test/a?b&c", "text": "the doc"},
        {"type": "user", "user_id": "U2"},
    ]}]}]  # fmt: skip
    assert parsed({"ts": TS, "user": "U1", "text": "", "blocks": blocks}).text == (
        "see <https://x.test/a?b&amp;c|the doc><@U2>"
    )
    assert parsed({"ts": TS, "user": "U1", "text": "kept", "blocks": blocks}).text == "kept"
    broadcast = parsed(
        {"ts": TS, "user": "U1", "text": "x", "subtype": "reply_broadcast", "thread_ts": "1.0"}
    )
    assert (broadcast.subtype, broadcast.thread_ts) == ("thread_broadcast", "1.0")
    upload = parsed({"ts": 1704100000.0001, "user": "U1", "subtype": "file_share", "files": [{}, {}]})
    assert (upload.ts, upload.files, upload.text) == ("1704100000.000100", 2, "")


def test_message_text_covers_everything_the_parser_may_use() -> None:
    raw = {"text": "", "attachments": [{"pretext": "p"}]}
    assert message_text(raw) == "p"


def test_assembly_labels_bots_and_counts_drops() -> None:
    report = DatasetReport()
    raws = [
        {"ts": TS, "user": "U1", "text": "root", "thread_ts": TS},
        {"ts": "1704100001.000100", "bot_id": "B9CI", "username": "ci", "text": "green", "thread_ts": TS},
        {"ts": "1704100002.000100", "bot_id": "B8", "text": "named by users", "thread_ts": TS},
        {"ts": "1704100003.000100", "user": "U2", "subtype": "channel_join", "thread_ts": TS},
    ]
    (thread,) = assemble_threads(
        raws, team="T1", channel=ChannelInfo("C1"), report=report, bot_names={"B8": "Deploy Bot"}
    )
    assert [m.text for m in thread.messages] == ["root", "green", "named by users"]
    assert thread.user_labels == {"B9CI": "ci", "B8": "Deploy Bot"}
    assert (thread.channel, thread.channel_name, thread.private) == ("C1", "", False)
    assert report.drops == {"channel_join": 1}


def test_half_an_emoji_is_dropped_and_whole_ones_kept() -> None:
    raw = {"ts": TS, "text": "cut \ud83d here, whole \U0001f600", "files": [{"name": "\ude00x"}], "n": 1}
    assert without_lone_surrogates(raw) == {
        "ts": TS,
        "text": "cut  here, whole \U0001f600",
        "files": [{"name": "x"}],
        "n": 1,
    }


def test_the_web_api_source_drops_half_emojis_too() -> None:
    page = {"messages": [{"ts": TS, "user": "U1", "text": "ok \ud83d"}, {"text": "no ts"}]}
    messages = page_messages(page)
    assert messages == [{"ts": TS, "user": "U1", "text": "ok "}]
    message = parsed(messages[0])
    assert message.text.encode("utf-8") == b"ok "
