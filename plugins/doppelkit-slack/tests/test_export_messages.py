"""How the export source turns Slack's message records into threads: subtypes, bots, edits,
threads spanning day files, ordering, privacy and the team ID."""

from __future__ import annotations

from pathlib import Path

import pytest
from slack_export_builders import TEAM, channel, message, user, write_export

from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, Message, Thread
from doppelkit_slack.sources.export import SlackExportSource
from doppelkit_slack.sources.reader import SlackExport

ROOT = "1704100000.000100"


def read(path: Path, run_context: RunContext, **options: object) -> tuple[list[Thread], DatasetReport]:
    report = DatasetReport()
    source = SlackExportSource(SlackExportSource.Config(path=path, **options), run_context)
    return list(source.threads(report)), report


def by_text(threads: list[Thread]) -> dict[str, Message]:
    return {m.text: m for t in threads for m in t.messages}


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """One channel whose thread replies spread over three day files, plus every subtype."""
    return write_export(
        tmp_path / "export",
        {
            "general/2024-01-01.json": [
                message(
                    "1704099000.000001", "U1ANN", "<@U1ANN> has joined the channel", subtype="channel_join"
                ),
                message(
                    "1704099001.000001", "U2BOB", "<@U2BOB> has left the channel", subtype="channel_leave"
                ),
                message(
                    "1704099002.000001", "U1ANN", "set the channel topic: bikes", subtype="channel_topic"
                ),
                message("1704099003.000001", "U1ANN", "set the purpose", subtype="channel_purpose"),
                message(ROOT, "U1ANN", "root of a long thread", thread_ts=ROOT, reply_count=4),
                message("1704100100.000100", "U2BOB", "first reply", thread_ts=ROOT, parent_user_id="U1ANN"),
                message("1704100200.000100", "U2BOB", "final words", thread_ts=ROOT, edited={"ts": "1"}),
                message(
                    "1704100300.000100",
                    None,
                    "",
                    subtype="bot_message",
                    bot_id="B9CI",
                    username="ci",
                    attachments=[{"fallback": "build #7 passed"}],
                ),
                message("1704100400.000100", "U3BOT", "beep from a bot user"),
                message("1704100500.000100", "U1ANN", "", subtype="file_share", files=[{"id": "F1"}]),
                message("1704100600.000100", "U1ANN", "", files=[{"id": "F2"}, {"id": "F3"}], upload=True),
                message("1704100700.000100", "U9GHOST", "from someone not in users.json"),
                message("1704100800.000100", "U1ANN", "hidden one", hidden=True),
                message("1704100900.000100", "USLACKBOT", "This message was deleted.", subtype="tombstone"),
                message("1704101000.000100", "U1ANN", "pinned", subtype="pinned_item"),
                message("1704101100.000100", "U1ANN", "waves", subtype="me_message"),
                message(
                    "1704101200.000100",
                    "U2BOB",
                    "reply to a root we never saw",
                    thread_ts="1704000000.000001",
                ),
                "not a message",
                {"type": "message", "text": "no timestamp"},
            ],
            "general/2024-01-03.json": [
                # Later in the file list but earlier in time: order comes from ts, numerically.
                message(
                    "1704100150.000100",
                    "U1ANN",
                    "broadcast reply",
                    thread_ts=ROOT,
                    subtype="thread_broadcast",
                ),
                message("1704300000.000100", "U2BOB", "unrelated tuesday message"),
            ],
            "general/2024-01-02.json": [
                message(
                    "1704100150.000100",
                    "U1ANN",
                    "broadcast reply",
                    thread_ts=ROOT,
                    subtype="thread_broadcast",
                ),
                message("1704100120.000100", "U1ANN", "second reply, from a later file", thread_ts=ROOT),
            ],
        },
    )


def test_threads_are_assembled_across_day_files_in_numeric_order(
    export: Path, run_context: RunContext
) -> None:
    threads, _ = read(export, run_context)
    root = next(t for t in threads if t.ts == ROOT)
    assert [m.text for m in root.messages] == [
        "root of a long thread",
        "first reply",
        "second reply, from a later file",
        "broadcast reply",
        "final words",
    ]
    assert [t.ts for t in threads] == sorted((t.ts for t in threads), key=float)
    assert all(t.team == TEAM and t.channel == "C1GEN" and t.channel_name == "general" for t in threads)


def test_thread_broadcast_is_counted_once(export: Path, run_context: RunContext) -> None:
    threads, _ = read(export, run_context)
    broadcasts = [m for t in threads for m in t.messages if m.text == "broadcast reply"]
    assert len(broadcasts) == 1 and broadcasts[0].subtype == "thread_broadcast"


def test_lone_messages_and_orphan_replies_are_their_own_threads(
    export: Path, run_context: RunContext
) -> None:
    threads, _ = read(export, run_context)
    lone = next(t for t in threads if t.messages[0].text == "unrelated tuesday message")
    assert lone.kind == "thread" and len(lone.messages) == 1 and lone.ts == lone.messages[0].ts
    orphan = next(t for t in threads if t.messages[0].text == "reply to a root we never saw")
    assert orphan.ts == "1704000000.000001"


def test_system_subtypes_are_dropped_and_counted(export: Path, run_context: RunContext) -> None:
    threads, report = read(export, run_context)
    messages = by_text(threads)
    for gone in ("set the channel topic: bikes", "hidden one", "pinned", "This message was deleted."):
        assert gone not in messages
    assert not any("has joined" in text or "has left" in text for text in messages)
    assert report.drops == {
        "channel_join": 1,
        "channel_leave": 1,
        "channel_topic": 1,
        "channel_purpose": 1,
        "hidden": 1,
        "deleted": 1,
        "pinned_item": 1,
        "malformed": 2,
    }
    assert messages["waves"].subtype == "me_message"


def test_bots_are_context_never_people(export: Path, run_context: RunContext) -> None:
    threads, _ = read(export, run_context)
    messages = by_text(threads)
    integration = messages["build #7 passed"]  # empty text: the attachment's words are used
    assert integration.is_bot and integration.user == "B9CI"
    bot_user = messages["beep from a bot user"]
    assert bot_user.is_bot and bot_user.user is None  # an is_bot user without a bot_id
    thread = next(t for t in threads if t.messages[0].text == "build #7 passed")
    assert thread.user_labels == {"B9CI": "ci"}
    humans = [m for m in messages.values() if not m.is_bot]
    assert {m.user for m in humans} == {"U1ANN", "U2BOB", "U9GHOST"}


def test_edits_files_and_unknown_users(export: Path, run_context: RunContext) -> None:
    threads, _ = read(export, run_context)
    messages = by_text(threads)
    assert messages["final words"].edited
    assert not messages["first reply"].edited
    uploads = [m for t in threads for m in t.messages if m.files]
    assert sorted(((m.subtype, m.files, m.text) for m in uploads), key=str) == [
        ("file_share", 1, ""),
        (None, 2, ""),
    ]
    assert messages["from someone not in users.json"].user == "U9GHOST"


def test_private_channels_and_dms_are_not_read_by_default(tmp_path: Path, run_context: RunContext) -> None:
    export = write_export(
        tmp_path / "export",
        {
            "general/2024-01-01.json": [message(ROOT, "U1ANN", "public words")],
            "secret-plans/2024-01-01.json": [message(ROOT, "U1ANN", "private words")],
            "D0123456789/2024-01-01.json": [message(ROOT, "U1ANN", "dm words")],
            "mpdm-ann--bob-1/2024-01-01.json": [message(ROOT, "U1ANN", "group dm words")],
        },
        top={
            "groups.json": [channel("G1SECRET", "secret-plans")],
            "dms.json": [{"id": "D0123456789", "members": ["U1ANN", "U2BOB"]}],
            "mpims.json": [{"id": "G2MPIM", "name": "mpdm-ann--bob-1"}],
        },
    )
    opened: list[str] = []
    original = SlackExport.read_bytes

    def spy(self: SlackExport, name: str) -> bytes:
        opened.append(name)
        return original(self, name)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SlackExport, "read_bytes", spy)
        threads, report = read(export, run_context)
        assert {m.text for t in threads for m in t.messages} == {"public words"}
        assert report.drops == {"private_channel": 1, "direct_message": 2}
        assert report.skipped_files == []  # private channel names are not written to the report
        assert sorted(opened) == ["channels.json", "general/2024-01-01.json", "users.json"]

        opened.clear()
        threads, report = read(export, run_context, include_private=True)
        assert {(m.text, t.private) for t in threads for m in t.messages} == {
            ("public words", False),
            ("private words", True),
        }
        assert report.drops == {"direct_message": 2}
        assert not any(name.startswith(("D0", "mpdm", "dms", "mpims")) for name in opened)


def test_team_comes_from_users_json_and_can_be_overridden(tmp_path: Path, run_context: RunContext) -> None:
    guest = user("U7GUEST", "guest", team_id="T0OTHER")
    days = {"general/2024-01-01.json": [message(ROOT, "U1ANN", "hi")]}
    export = write_export(tmp_path / "a", days, users=[user("U1ANN", "ann"), user("U2BOB", "bob"), guest])
    source = SlackExportSource(SlackExportSource.Config(path=export), run_context)
    assert source.workspace().team == TEAM  # the most common team_id, not the guest's
    threads, _ = read(export, run_context, team="T0OVERRIDE")
    assert {t.team for t in threads} == {"T0OVERRIDE"}
    override = SlackExportSource(SlackExportSource.Config(path=export, team="T0OVERRIDE"), run_context)
    assert override.workspace().team == "T0OVERRIDE"

    old = write_export(tmp_path / "b", days, users=[{"id": "U1ANN", "name": "ann"}])
    team = SlackExportSource(SlackExportSource.Config(path=old), run_context).workspace().team
    assert team.startswith("export-")  # no team_id anywhere: a stable ID derived from the members
    assert team == SlackExportSource(SlackExportSource.Config(path=old), run_context).workspace().team


def test_workspace_users(tmp_path: Path, run_context: RunContext) -> None:
    export = write_export(
        tmp_path / "export",
        {},
        users=[
            user("U1ANN", "ann", profile={"display_name": "Annie", "real_name": "Ann Lee"}, real_name=None),
            user("U1ANN", "ann-duplicate"),
            {"id": "USLACKBOT", "name": "slackbot", "is_bot": False},
            {"name": "no id"},
            user("U5OLD", "old", deleted=True),
        ],
    )
    ws = SlackExportSource(SlackExportSource.Config(path=export), run_context).workspace()
    users = {u.id: u for u in ws.users}
    assert list(users) == ["U1ANN", "USLACKBOT", "U5OLD"]
    assert (users["U1ANN"].display_name, users["U1ANN"].real_name, users["U1ANN"].name) == (
        "Annie",
        "Ann Lee",
        "ann",
    )
    assert users["USLACKBOT"].is_bot and users["U5OLD"].deleted


def test_numeric_timestamps_and_string_order(tmp_path: Path, run_context: RunContext) -> None:
    export = write_export(
        tmp_path / "export",
        {
            "general/2024-01-01.json": [
                message("999.900000", "U1ANN", "root", thread_ts="999.900000"),
                message(
                    "1000.100000", "U2BOB", "later reply (sorts first as a string)", thread_ts="999.900000"
                ),
                {"type": "message", "ts": 1001.5, "user": "U1ANN", "text": "numeric ts"},
                message("1002.000000", "U1ANN", "odd thread_ts", thread_ts="soon"),
                message("nan", "U1ANN", "not a time"),
            ]
        },
    )
    threads, _ = read(export, run_context)
    assert [m.text for m in threads[0].messages] == ["root", "later reply (sorts first as a string)"]
    assert threads[1].ts == "1001.500000"
    assert (threads[2].ts, threads[2].messages[0].thread_ts) == ("1002.000000", None)
    assert len(threads) == 3


def test_channels_are_read_in_a_stable_order(tmp_path: Path, run_context: RunContext) -> None:
    export = write_export(
        tmp_path / "export",
        {
            f"{name}/2024-01-01.json": [message(ROOT, "U1ANN", f"in {name}")]
            for name in ("zebra", "alpha", "middle")
        },
        channels=[channel("C3", "zebra"), channel("C1", "alpha"), channel("C2", "middle")],
    )
    threads, _ = read(export, run_context)
    assert [t.channel_name for t in threads] == ["alpha", "middle", "zebra"]


# -- Slack-generated text (issue 11, class 1) -----------------------------------------------

UPLOAD = "<https://acme.slack.com/files/ann/F0ABC/plan.pdf|plan.pdf>"


def test_upload_lines_are_slack_words_not_the_persons(tmp_path: Path, run_context: RunContext) -> None:
    """What Slack wrote about an upload is left out; what the person typed with it is kept."""
    blocks = [{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
        {"type": "user", "user_id": "U1ANN"},
        {"type": "text", "text": " uploaded a file: "},
        {"type": "link", "url": "https://acme.slack.com/files/ann/F0DEF/mock.png", "text": "mock.png"},
    ]}]}]  # fmt: skip
    export = write_export(
        tmp_path / "export",
        {
            "general/2015-06-01.json": [
                # 2015-2017 exports: a file_share subtype and the file in "file"
                message("1433116800.000001", "U1ANN", f"<@U1ANN|ann> uploaded a file: {UPLOAD}",
                        subtype="file_share", upload=True, file={"id": "F0ABC"}),
                message("1433116801.000001", "U1ANN",
                        f"<@U1ANN|ann> uploaded a file: {UPLOAD} and commented: here is the plan\nsee page 2",
                        subtype="file_share", upload=True, file={"id": "F0ABC"}),
                # older: only upload: true marks it
                message("1433116802.000001", "U2BOB", f"<@U2BOB|bob> uploaded a file: {UPLOAD}", upload=True),
                # rebuilt from rich-text blocks (empty text)
                message("1433116803.000001", "U1ANN", "", blocks=blocks, files=[{"id": "F0DEF"}]),
                message("1433116804.000001", "U2BOB", f"<@U2BOB|bob> mentioned a file: {UPLOAD}"),
                message("1433116805.000001", "U2BOB",
                        "<@U2BOB|bob> shared a file: plan.pdf and commented: thoughts, <@U1ANN>?",
                        subtype="file_share"),
                # people typing things that look alike are left alone
                message("1433116806.000001", "U1ANN", f"I uploaded a file: {UPLOAD}"),
                message("1433116807.000001", "U1ANN", f"<@U2BOB> uploaded a file: {UPLOAD} today, right?"),
            ]
        },
    )  # fmt: skip
    threads, report = read(export, run_context)
    texts = [m.text for t in threads for m in t.messages]
    assert texts == [
        "",
        "here is the plan\nsee page 2",
        "",
        "",
        "",
        "thoughts, <@U1ANN>?",
        f"I uploaded a file: {UPLOAD}",
        f"<@U2BOB> uploaded a file: {UPLOAD} today, right?",
    ]
    assert report.generated_text == {"file_upload": 6}
    files = [m.files for t in threads for m in t.messages]
    assert files[:4] == [1, 1, 0, 1]  # "file" (singular) in older exports counts too
