"""Parser parity: one Slack thread read three ways becomes one and the same Thread.

The same raw messages (plain text with a mention, a link and an entity, an edit, text only in
rich-text blocks, a bot posting attachments, a bot user, Slackbot, a ``thread_broadcast`` and
an older ``reply_broadcast``, a ``channel_join``, a hidden message, a file share, an older
upload whose text is Slack's "uploaded a file" line with a comment, the mention of the bot) are read

(a) from an export folder by the ``slack_export`` source (training from an export),
(b) through the Web API from FakeSlack by the ``slack`` source (training from a scrape),
(c) by the running bot, answering a signed ``app_mention`` whose ``conversations.replies``
    returns them (serving); the engine records the thread it is given.

All three must give equal messages, and the same names for everyone in the thread, so a
persona sees in Slack exactly what it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bolt_support import BOT_ID, BOT_USER, CHANNEL, TEAM, TOKEN, replies, start_bot, stop_bot
from slack_export_builders import channel, message, write_export

from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, Thread, Workspace
from doppelkit.testing.fakes import EchoEngine
from doppelkit.threads import with_user_labels
from doppelkit_slack.sources.api import SlackApiSource
from doppelkit_slack.sources.export import SlackExportSource
from doppelkit_slack.testing import BotIdentity, FakeSlack, FakeWorkspace, app_mention

ROOT = "1704100000.000100"
MENTION = "1704200900.000100"
PEOPLE = [
    {
        "id": "U_ANN",
        "team_id": TEAM,
        "name": "ann",
        "profile": {"display_name": "Ann", "real_name": "Ann Lee"},
    },
    {"id": "U_BOB", "team_id": TEAM, "name": "bob", "profile": {"display_name": " Bob ", "real_name": "Bob"}},
    {
        "id": "U3HELPER",
        "team_id": TEAM,
        "name": "helperbot",
        "is_bot": True,
        "profile": {"display_name": "", "real_name": "Helper Bot", "bot_id": "B3HELP"},
    },
    {"id": "USLACKBOT", "team_id": TEAM, "name": "slackbot", "is_bot": False, "profile": {}},
]
IDENTITY = BotIdentity(user_id=BOT_USER, bot_id=BOT_ID, name="doppel")
BLOCKS = [
    {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "blocks only: "},
                    {"type": "user", "user_id": "U_BOB"},
                    {"type": "text", "text": " see "},
                    {"type": "link", "url": "https://example.com/spec", "text": "the spec"},
                    {"type": "emoji", "name": "tada"},
                    {"type": "text", "text": " now", "style": {"bold": True}},
                ],
            },
            {"type": "rich_text_list", "style": "bullet", "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": "a < b & c"}]},
            ]},
        ],
    }
]  # fmt: skip


def reply(ts: str, user: str | None, text: str, **extra: Any) -> dict[str, Any]:
    return message(ts, user, text, thread_ts=ROOT, **extra)


THREAD = [
    message(ROOT, "U_ANN", "plan for friday: <https://example.com/plan|the plan> &amp; more", thread_ts=ROOT),
    reply(
        "1704100100.000100",
        "U_BOB",
        "fixed the typo <@U_ANN>",
        edited={"user": "U_BOB", "ts": "1704100150.0"},
    ),
    reply("1704100200.000100", "U_ANN", "", blocks=BLOCKS),
    reply(
        "1704100300.000100",
        None,
        "",
        subtype="bot_message",
        bot_id="B9CI",
        username="ci",
        attachments=[{"fallback": "build #7 passed", "color": "good"}],
    ),
    reply("1704100400.000100", "U3HELPER", "beep, deploy queued", bot_id="B3HELP"),
    reply("1704100500.000100", "U_BOB", "shipping it to everyone", subtype="thread_broadcast"),
    reply("1704100600.000100", "U_ANN", "an older client's broadcast", subtype="reply_broadcast"),
    reply("1704100700.000100", "U_BOB", "<@U_BOB> has joined the channel", subtype="channel_join"),
    reply("1704100800.000100", "USLACKBOT", "Reminder: standup in 5 minutes."),
    reply("1704100900.000100", "U_ANN", "words nobody should see", hidden=True),
    reply(
        "1704101000.000100",
        "U_ANN",
        "screenshot",
        subtype="file_share",
        files=[{"id": "F1", "title": "a.png"}],
    ),
    reply(
        "1704101050.000100",
        "U9EXTERN1",  # a shared channel's member from another workspace: not in users.json
        "hello from the partner team, see <#C0RANDOM1> and <#C0GENERAL|>",
        user_profile={"display_name": "Extie", "real_name": "Ext Person", "team": "T0OTHER"},
    ),
    reply(
        "1704101100.000100",
        "U_BOB",
        "<@U_BOB|bob> uploaded a file: <https://x.slack.com/files/F2/log.txt|log.txt> and commented: the log",
        subtype="file_share",
        upload=True,
        file={"id": "F2"},
    ),
]
LATER = [
    # A broadcast is exported twice: in its thread and in the channel (here: a later day file).
    reply("1704100500.000100", "U_BOB", "shipping it to everyone", subtype="thread_broadcast"),
    reply(MENTION, "U_BOB", f"<@{BOT_USER}> what do you think, <@U_ANN>? and <@U9EXTERN1>?"),
]


@pytest.fixture
def export(tmp_path: Path) -> Path:
    return write_export(
        tmp_path / "export",
        {"general/2024-01-01.json": THREAD, "general/2024-01-02.json": LATER},
        users=[*PEOPLE, IDENTITY.user_record(TEAM)],
        channels=[channel(CHANNEL, "general"), channel("C0RANDOM1", "random")],
    )


@pytest.fixture
def slack(export: Path) -> Iterator[FakeSlack]:
    with FakeSlack(FakeWorkspace.from_export(export, bot=IDENTITY), token=TOKEN) as fake:
        yield fake


def the_thread(threads: list[Thread], workspace: Workspace) -> Thread:
    """The thread as a formatter sees it in training: ingest adds the workspace's names."""
    [thread] = [t for t in threads if t.ts == ROOT]
    [labelled] = with_user_labels([thread], workspace)
    return labelled


def from_export(export: Path, context: RunContext) -> Thread:
    source = SlackExportSource(SlackExportSource.Config(path=export), context)
    return the_thread(list(source.threads(DatasetReport())), source.workspace())


def from_web_api(slack: FakeSlack, context: RunContext) -> Thread:
    config = SlackApiSource.Config(token=slack.token, api_url=slack.url, retry_backoff_s=0.01)
    source = SlackApiSource(config, context)
    return the_thread(list(source.threads(DatasetReport())), source.workspace())


def from_the_bot(slack: FakeSlack, tmp_path: Path) -> Thread:
    engine = EchoEngine(versions={(TEAM, "U_ANN"): "v1"})
    bot = start_bot(tmp_path / "bot", slack, engine)
    try:
        event = app_mention(
            f"<@{BOT_USER}> what do you think, <@U_ANN>? and <@U9EXTERN1>?",
            user="U_BOB",
            channel=CHANNEL,
            ts=MENTION,
            thread_ts=ROOT,
            team=TEAM,
        )
        assert bot.sender.send_event(event, team=TEAM).status == 200
        [post] = replies(bot)
        assert post.thread_ts == ROOT
        [call] = engine.calls
        return call.thread
    finally:
        stop_bot(bot)


def fields(thread: Thread) -> list[dict[str, Any]]:
    return [m.model_dump() for m in thread.messages]


def test_export_web_api_and_bot_read_a_thread_identically(
    export: Path, slack: FakeSlack, run_context: RunContext, tmp_path: Path
) -> None:
    exported = from_export(export, run_context)
    scraped = from_web_api(slack, run_context)  # before the bot posts its reply in the thread
    live = from_the_bot(slack, tmp_path)

    assert fields(scraped) == fields(exported)
    assert fields(live) == fields(exported)
    assert scraped.user_labels == exported.user_labels
    assert live.user_labels == exported.user_labels
    assert scraped.channel_labels == exported.channel_labels == live.channel_labels
    assert live.channel_name == exported.channel_name == "general"

    # ...and the thread really covers every case, read as documented.
    by_ts = {m.ts: m for m in exported.messages}
    assert len(exported.messages) == 12  # 14 records: a join and a hidden message dropped, a broadcast once
    assert "words nobody should see" not in str(fields(exported))
    assert not any("has joined" in m.text for m in exported.messages)
    assert by_ts[ROOT].text == "plan for friday: <https://example.com/plan|the plan> &amp; more"
    assert by_ts["1704100100.000100"].edited
    assert by_ts["1704100200.000100"].text == (
        "blocks only: <@U_BOB> see <https://example.com/spec|the spec>:tada: *now*\n• a &lt; b &amp; c"
    )
    ci, helper, slackbot = (
        by_ts[ts] for ts in ("1704100300.000100", "1704100400.000100", "1704100800.000100")
    )
    assert (ci.user, ci.is_bot, ci.text) == ("B9CI", True, "build #7 passed")
    assert (helper.user, helper.is_bot) == ("B3HELP", True)
    assert (slackbot.user, slackbot.is_bot) == (None, True)
    assert [by_ts[ts].subtype for ts in ("1704100500.000100", "1704100600.000100")] == [
        "thread_broadcast"
    ] * 2
    assert by_ts["1704101000.000100"].files == 1
    upload = by_ts["1704101100.000100"]  # Slack's upload line left out, the comment kept
    assert (upload.text, upload.files, upload.subtype) == ("the log", 1, "file_share")
    assert exported.messages[-1].ts == MENTION
    assert exported.user_labels == {
        "U_ANN": "Ann",
        "U_BOB": "Bob",
        BOT_USER: "doppel",
        "B9CI": "ci",
        "B3HELP": "Helper Bot",
        "U9EXTERN1": "Extie",  # the name Slack recorded with their message
    }
    assert exported.channel_labels == {"C0RANDOM1": "random"}
