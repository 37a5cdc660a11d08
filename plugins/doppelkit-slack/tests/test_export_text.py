"""What a persona's replies read like after ``ingest``, from minimal exports of real shapes
(issue 11): auto-links and entities as the person saw them, channel and people names Slack
recorded, older and newer message shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slack_export_builders import USERS, channel, message, write_export

from doppelkit.builtins.formatters import ChatFormatter
from doppelkit.config import RunConfig, Selection
from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport
from doppelkit.pipeline import ingest
from doppelkit.settings import Settings
from doppelkit_slack.sources.export import SlackExportSource

ROOT = "1704100000.000100"


def thread_of(*replies: str, author: str = "U1ANN") -> list[dict[str, Any]]:
    """Bob asks, ``author`` answers with each of ``replies`` (one message each, in a thread)."""
    messages = [message(ROOT, "U2BOB", "question for ann: what do you think?", thread_ts=ROOT)]
    for i, text in enumerate(replies):
        messages.append(message(f"17041001{i:02d}.000100", author, text, thread_ts=ROOT))
        messages.append(message(f"17041001{i:02d}.000500", "U2BOB", "and then?", thread_ts=ROOT))
    return messages


def ingested(
    export: Path, run_context: RunContext, tmp_path: Path, persona: str = "ann", **dataset: Any
) -> tuple[list[dict[str, Any]], DatasetReport]:
    """``doppelkit ingest`` (in this process, nothing held out, replies of any length)."""
    out = tmp_path / "out" / "dataset.jsonl"
    settings = Settings.model_validate(
        {
            "home": run_context.home.root,
            "persona": {"user": persona},
            "dataset": {"path": out, "eval_fraction": 0, **dataset},
        }
    )
    selections = {
        "source": Selection(
            "source", "slack_export", SlackExportSource, SlackExportSource.Config(path=export), "test"
        ),
        "formatter": Selection(
            "formatter", "chat", ChatFormatter, ChatFormatter.Config(min_length=1), "test"
        ),
    }
    result = ingest(RunConfig(settings=settings, selections=selections), run_context)
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()], result.report


def replies(examples: list[dict[str, Any]]) -> list[str]:
    return [example["messages"][-1]["content"] for example in examples]


# -- class 2: auto-links read as typed ----------------------------------------------------------


def test_links_and_entities_read_as_the_person_saw_them(tmp_path: Path, run_context: RunContext) -> None:
    """Slack turns what people type into link entities; the reply reads as typed."""
    typed = {
        "call 500-1000 after lunch": "call <tel:5001000|500-1000> after lunch",
        "or +1 (415) 555-0100": "or <tel:+14155550100|+1 (415) 555-0100>",
        "or 5001000": "or <tel:5001000>",
        # (emails are scrubbed, in the link as anywhere)
        "mail [REDACTED:email]": "mail <mailto:ann@example.com|ann@example.com>",
        "mail Ann ([REDACTED:email])": "mail <mailto:ann@example.com|Ann>",
        "see example.com": "see <http://example.com|example.com>",
        "see example.com/docs": "see <http://example.com/docs/|example.com/docs>",
        "see www.example.com": "see <http://www.example.com|www.example.com>",
        "see https://example.com/a?b=1&c=2": "see <https://example.com/a?b=1&amp;c=2>",
        "see de.wikipedia.org/wiki/Straße": (
            "see <https://de.wikipedia.org/wiki/Stra%C3%9Fe|de.wikipedia.org/wiki/Straße>"
        ),
        "see the docs (https://example.com/docs)": "see <https://example.com/docs|the docs>",
        "@here @channel @everyone lunch": "<!here> <!channel|channel> <!everyone|@everyone> lunch",
        "@devs please": "<!subteam^S0DEVS|@devs> please",
        "on Feb 18, 2014": "on <!date^1392734382^{date_short}|Feb 18, 2014>",
        "@bob and #general": "<@U2BOB|Robert> and <#C1GEN|general>",
        "a < b & c > d": "a &lt; b &amp; c &gt; d",
    }
    export = write_export(tmp_path / "export", {"general/2024-01-01.json": thread_of(*typed.values())})
    examples, _ = ingested(export, run_context, tmp_path)
    assert replies(examples) == list(typed), "the person's replies, as typed"


# -- class 3: names Slack recorded ---------------------------------------------------------------

EXTERNAL = "U9EXTERN1"  # a member of a shared channel from another workspace: not in users.json
PROFILE = {"display_name": "Extie", "real_name": "Ext Person", "name": "extie", "team": "T0OTHER"}


def test_channel_mentions_and_people_missing_from_users_json_read_by_name(
    tmp_path: Path, run_context: RunContext
) -> None:
    root2 = "1704200000.000100"
    export = write_export(
        tmp_path / "export",
        {
            "general/2024-01-01.json": [
                message(ROOT, EXTERNAL, "hello from the partner team", thread_ts=ROOT, user_profile=PROFILE),
                message("1704100100.000100", "U1ANN", f"welcome <@{EXTERNAL}>! see <#C2RND> and <#C3OPS|>",
                        thread_ts=ROOT),
                message(root2, "U2BOB", "who knows the partner contact?", thread_ts=root2),
                message("1704200100.000100", "U1ANN", f"ask <@{EXTERNAL}>, not <#G0SECRET1>",
                        thread_ts=root2),
            ],
            "random/2024-01-01.json": [message("1704300000.000100", "U2BOB", "hi")],
        },
        channels=[channel("C1GEN", "general"), channel("C2RND", "random"), channel("C3OPS", "ops")],
    )  # fmt: skip
    examples, _ = ingested(export, run_context, tmp_path)
    assert replies(examples) == ["welcome @Extie! see #random and #ops", "ask @Extie, not #G0SECRET1"]
    assert examples[0]["messages"][1]["content"] == "Extie: hello from the partner team"
    corpus = (run_context.home.root / "cache" / "corpus").rglob("*.jsonl")
    said = [json.loads(line) for path in corpus for line in path.read_text(encoding="utf-8").splitlines()]
    assert said[0]["messages"][0] == {"speaker": "Extie", "text": "hello from the partner team"}


def test_names_in_users_json_win_over_names_recorded_with_messages(
    tmp_path: Path, run_context: RunContext
) -> None:
    export = write_export(
        tmp_path / "export",
        {
            "general/2024-01-01.json": [
                message(ROOT, "U2BOB", "old name on this message", thread_ts=ROOT,
                        user_profile={"display_name": "bobby-2019"}),
                message("1704100100.000100", "U1ANN", "<@U2BOB> yes", thread_ts=ROOT),
            ]
        },
        users=USERS,
    )  # fmt: skip
    examples, _ = ingested(export, run_context, tmp_path)
    assert replies(examples) == ["@bob yes"]


# -- class 6: older and newer message shapes -------------------------------------------------------


def test_file_comments_are_the_commenters_words(tmp_path: Path, run_context: RunContext) -> None:
    """Exports before 2018: a comment on a file is a ``file_comment`` message whose words are in
    ``comment.comment`` (the text is Slack's "commented on …'s file" line)."""
    comment = {
        "type": "message",
        "subtype": "file_comment",
        "ts": "1433116900.000002",
        "text": "<@U1ANN|ann> commented on <@U2BOB|bob>’s file <https://x.io/F1/plan.pdf|plan.pdf>: "
        "page 2 needs numbers",
        "file": {"id": "F1", "title": "plan.pdf", "user": "U2BOB"},
        "comment": {"id": "Fc1", "user": "U1ANN", "comment": "page 2 needs numbers", "timestamp": 1433116900},
        "is_intro": False,
    }
    export = write_export(
        tmp_path / "export",
        {"general/2015-06-01.json": [message("1433116800.000001", "U2BOB", "the plan is up"), comment]},
    )
    examples, report = ingested(export, run_context, tmp_path, session_gap_minutes=30)
    assert replies(examples) == ["page 2 needs numbers"]
    assert examples[0]["messages"][1]["content"] == "bob: the plan is up"
    assert "file_comment" not in report.drops and report.generated_text == {"file_comment": 1}


LIST_BLOCKS = [
    {"type": "rich_text", "elements": [
        {"type": "rich_text_section", "elements": [{"type": "text", "text": "the plan:"}]},
        {"type": "rich_text_list", "style": "ordered", "indent": 0, "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "ship"}]},
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "test"}]},
        ]},
        {"type": "rich_text_list", "style": "ordered", "indent": 1, "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "unit"}]},
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "load"}]},
        ]},
        {"type": "rich_text_list", "style": "ordered", "indent": 2, "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "1M messages"}]},
        ]},
        {"type": "rich_text_list", "style": "ordered", "indent": 0, "offset": 2, "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "celebrate"}]},
        ]},
        {"type": "rich_text_list", "style": "bullet", "indent": 0, "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "risks"}]},
        ]},
        {"type": "rich_text_list", "style": "bullet", "indent": 1, "elements": [
            {"type": "rich_text_section", "elements": [
                {"type": "text", "text": "it is "},
                {"type": "text", "text": "very ", "style": {"bold": True}},
                {"type": "text", "text": "late", "style": {"italic": True, "strike": True}},
                {"type": "text", "text": " ", "style": {"bold": True}},
                {"type": "link", "url": "https://x.io/r", "text": "the risk log", "style": {"bold": True}},
            ]},
        ]},
        {"type": "rich_text_list", "style": "bullet", "indent": 2, "elements": [
            {"type": "rich_text_section", "elements": [
                {"type": "text", "text": "see "},
                {"type": "canvas", "canvas_id": "F0CANVAS1", "text": "Q3 plan"},  # an element we do not know
                {"type": "text", "text": " and "},
                {"type": "text", "text": "run()", "style": {"code": True}},
            ]},
        ]},
    ]},
]  # fmt: skip


def test_rich_text_rebuilt_from_blocks_keeps_numbering_nesting_and_styles(
    tmp_path: Path, run_context: RunContext
) -> None:
    export = write_export(
        tmp_path / "export", {"general/2024-01-01.json": [*thread_of("x")[:1], message(
            "1704100100.000100", "U1ANN", "", thread_ts=ROOT, blocks=LIST_BLOCKS)]}
    )  # fmt: skip
    examples, _ = ingested(export, run_context, tmp_path)
    assert replies(examples) == [
        "the plan:\n"
        "1. ship\n2. test\n"
        "    a. unit\n    b. load\n"
        "        i. 1M messages\n"
        "3. celebrate\n"
        "• risks\n"
        "    ◦ it is *very* ~_late_~ *the risk log (https://x.io/r)*\n"
        "        ▪ see Q3 plan and `run()`"
    ]


def test_canvases_lists_and_other_documents_are_noted_not_read(
    tmp_path: Path, run_context: RunContext
) -> None:
    """Canvases (huddle notes are canvases too) and lists are documents, not chat: not read,
    and each is named in the report (never counted as a private channel)."""
    export = write_export(
        tmp_path / "export",
        {
            "general/2024-01-01.json": thread_of("a reply"),
            "general/canvas_in_the_conversation.json": [{"type": "canvas", "title": "Channel canvas"}],
            "F0CANVAS1:Q3-plan/2024-01-01.json": [{"type": "message", "text": "canvas text", "ts": "1.0"}],
            "F0LIST001/2024-01-01.json": [{"type": "list_record", "text": "a list row"}],
        },
        top={"groups.json": [], "canvases.json": [{"id": "F0CANVAS1"}], "integration_logs.json": []},
    )
    examples, report = ingested(export, run_context, tmp_path)
    assert replies(examples) == ["a reply"]
    assert "private_channel" not in report.drops
    assert sorted((s.path, s.reason) for s in report.skipped_files) == [
        ("F0CANVAS1:Q3-plan/", "a canvas or list (a document, not chat): not read"),
        ("F0LIST001/", "a canvas or list (a document, not chat): not read"),
        ("canvases.json", "canvases (documents, not chat): not read"),
        ("general/canvas_in_the_conversation.json", "the channel's canvas (a document, not chat): not read"),
    ]


# -- class 7: exports from before threads ----------------------------------------------------------


def test_channels_without_threads_are_read_as_time_gap_sessions(
    tmp_path: Path, run_context: RunContext
) -> None:
    """Threads came to Slack in 2017: in an older export every message stands alone, and every
    reply would be learnt with an empty context. Channels where nobody ever replied in a thread
    are grouped into time-gap sessions by default; channels with threads are left as they are."""
    t0 = 1433116800  # June 2015
    old = [
        message(f"{t0}.000100", "U2BOB", "anyone know why the build is red?"),
        message(f"{t0 + 120}.000100", "U1ANN", "the flaky payments test again, I will quarantine it"),
        message(f"{t0 + 7200}.000100", "U2BOB", "lunch?"),
        message(f"{t0 + 7260}.000100", "U1ANN", "yes, the usual place at noon works for me"),
    ]
    root = f"{t0 + 86400}.000100"
    modern = [
        message(root, "U2BOB", "a question in a thread", thread_ts=root),
        message(f"{t0 + 86460}.000100", "U1ANN", "an answer in that thread, long enough", thread_ts=root),
        message(f"{t0 + 86500}.000100", "U2BOB", "a lone message in a threaded channel"),
        message(f"{t0 + 86560}.000100", "U1ANN", "a lone answer in a threaded channel, long enough"),
    ]
    export = write_export(
        tmp_path / "export",
        {"general/2015-06-01.json": old, "modern/2015-06-02.json": modern},
        channels=[channel("C1GEN", "general"), channel("C2NEW", "modern")],
    )
    examples, report = ingested(export, run_context, tmp_path)
    contexts = {example["messages"][-1]["content"]: example["messages"][1]["content"] for example in examples}
    assert contexts == {
        "the flaky payments test again, I will quarantine it": "bob: anyone know why the build is red?",
        "yes, the usual place at noon works for me": "bob: lunch?",
        "an answer in that thread, long enough": "bob: a question in a thread",
        "a lone answer in a threaded channel, long enough": "(new conversation)",
    }
    assert report.threadless_channels == 1
    kinds = {example["meta"]["channel_name"]: example["meta"]["thread_kind"] for example in examples[:2]}
    assert kinds == {"general": "session"}

    examples, report = ingested(export, run_context, tmp_path / "off", threadless_gap_minutes=None)
    assert {example["messages"][1]["content"] for example in examples[:2]} == {"(new conversation)"}
    assert report.threadless_channels == 0
