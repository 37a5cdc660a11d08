"""The ``slack`` Web API source scrubs messages before they are journaled: secrets never reach
``home/state/scrape``, even in an interrupted scrape, and the dataset report counts what was
removed exactly once, whether the scrape ran through or was resumed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from slack_export_builders import channel, message, write_export

from doppelkit.builtins.formatters import ChatFormatter
from doppelkit.config import RunConfig, Selection
from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport
from doppelkit.pipeline import IngestResult, ingest
from doppelkit.settings import Settings
from doppelkit_slack.sources.api import MessageScrubber, SlackApiSource
from doppelkit_slack.sources.export import SlackExportSource
from doppelkit_slack.testing import FakeSlack
from doppelkit_slack.webclient import SlackUnavailableError

TEAM = "T0TEST0001"
TOKEN = "xoxb-1234567890-abcdefghijkl"
EMAIL = "ann.lee@example.com"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
BLOCK_EMAIL = "ops-oncall@example.com"
THREADS = 10
SECRETS = (TOKEN, EMAIL, AWS_KEY, BLOCK_EMAIL, *(f"owner{i}@example.com" for i in range(THREADS)))


def rich_text(*parts: str) -> list[dict[str, Any]]:
    elements = [{"type": "text", "text": part} for part in parts]
    return [{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": elements}]}]


def secret_export(root: Path) -> Path:
    """One channel: a thread whose root holds a Slack token (so it is in a history page and in
    its thread's record), an email in both ``text`` and ``blocks`` (as the API sends it), a
    blocks-only message with an AWS key and an email split over rich-text leaves, and filler
    threads, each with an email, for a scrape to be interrupted in."""
    root_ts = "1704100000.000100"
    replying = "I looked at the staging box again this morning and here is what I found"
    messages = [
        message(root_ts, "U2BOB", f"the deploy token is {TOKEN}, do not share it", thread_ts=root_ts),
        message(
            "1704100100.000100",
            "U1ANN",
            f"thanks, and mail {EMAIL} if the deploy breaks again tonight",
            thread_ts=root_ts,
            blocks=rich_text(f"thanks, and mail {EMAIL} if the deploy breaks again tonight"),
        ),
        message(
            "1704100200.000100",
            "U1ANN",
            "",
            thread_ts=root_ts,
            blocks=rich_text("the staging key is ", AWS_KEY, f" and page {BLOCK_EMAIL} for access"),
        ),
    ]
    for i in range(THREADS):
        ts = f"17041{10 + i:02d}000.000100"
        messages.append(message(ts, "U2BOB", f"question {i}: who owns the staging box?", thread_ts=ts))
        messages += [
            message(f"17041{10 + i:02d}0{r}0.000100", "U1ANN", f"{replying}, part {r}", thread_ts=ts)
            for r in range(1, 3)
        ]
        messages.append(
            message(
                f"17041{10 + i:02d}090.000100", "U1ANN", f"{replying}: ask owner{i}@example.com", thread_ts=ts
            )
        )
    return write_export(root, {"general/2024-01-01.json": messages}, channels=[channel("C1GEN", "general")])


# The root's token once (not once per record), the text-and-blocks email once, the split blocks
# message's key and email, and one email per filler thread.
EXPECTED = {"slack_token": 1, "email": 2 + THREADS, "aws_access_key": 1}


@pytest.fixture
def slack(tmp_path: Path) -> Any:
    with FakeSlack.from_export(secret_export(tmp_path / "export"), max_page_size=2) as server:
        yield server


def api_config(slack: FakeSlack, **options: Any) -> SlackApiSource.Config:
    return SlackApiSource.Config(token=slack.token, api_url=slack.url, retry_backoff_s=0.01, **options)


def run_ingest(
    context: RunContext, name: str, source_cls: type[Any], config: Any, out: Path, **scrub: bool
) -> IngestResult:
    settings = Settings.model_validate(
        {"home": context.home.root, "persona": {"user": "ann"}, "dataset": {"path": out}, "scrub": scrub}
    )
    selections = {
        "source": Selection("source", name, source_cls, config, "test"),
        "formatter": Selection("formatter", "chat", ChatFormatter, ChatFormatter.Config(), "test"),
    }
    run = RunConfig(settings=settings, selections=selections)
    return ingest(run, dataclasses.replace(context, settings=settings, run=run))


def journals(context: RunContext) -> list[Path]:
    return sorted((context.home.state / "scrape" / TEAM).rglob("*.jsonl"))


def interrupt(slack: FakeSlack, context: RunContext) -> None:
    """A scrape that dies mid-way: the server fails every replies call from the 6th on."""
    slack.inject_fault("conversations.replies", nth=6, times=None, status=500)
    source = SlackApiSource(api_config(slack, max_retries=1, max_concurrency=2), context)
    with pytest.raises(SlackUnavailableError):
        list(source.threads(DatasetReport()))
    slack.clear_faults()
    slack.reset_calls()


def leaked(root: Path) -> list[str]:
    return [
        f"{path}: {secret}"
        for path in root.rglob("*")
        if path.is_file()
        for secret in SECRETS
        if secret in path.read_text(encoding="utf-8", errors="replace")
    ]


def test_an_interrupted_scrape_journals_no_secret_and_files_are_private(
    run_context: RunContext, slack: FakeSlack
) -> None:
    interrupt(slack, run_context)
    files = journals(run_context)
    assert files, "the interrupted scrape kept its journal"
    text = "".join(path.read_text(encoding="utf-8") for path in files)
    assert "[REDACTED:slack_token]" in text and "[REDACTED:email]" in text
    assert '"scrubbed":' in text, "the counts are journaled with the records"
    assert not leaked(run_context.home.state / "scrape")
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in files)


def test_counts_are_right_and_the_same_when_resumed(
    run_context: RunContext, slack: FakeSlack, tmp_path: Path
) -> None:
    export = SlackExportSource.Config(path=tmp_path / "export")
    from_export = run_ingest(
        run_context, "slack_export", SlackExportSource, export, tmp_path / "e" / "d.jsonl"
    )
    through = run_ingest(run_context, "slack", SlackApiSource, api_config(slack), tmp_path / "a" / "d.jsonl")
    assert not journals(run_context), "a finished scrape leaves no journal"

    interrupt(slack, run_context)
    resumed = run_ingest(run_context, "slack", SlackApiSource, api_config(slack), tmp_path / "r" / "d.jsonl")
    assert slack.count("conversations.list") == 0, "the second run resumed the checkpoint"

    assert through.report.scrubbed == EXPECTED
    assert resumed.report.scrubbed == EXPECTED
    assert from_export.report.scrubbed == EXPECTED, "as if ingest had found them itself"
    for result in (through, resumed):
        dataset = result.paths.train.read_text(encoding="utf-8")
        dataset += result.paths.eval.read_text(encoding="utf-8") if result.paths.eval.exists() else ""
        assert "[REDACTED:email]" in dataset
    assert resumed.paths.train.read_bytes() == through.paths.train.read_bytes()
    for out in ("a", "r"):
        assert not leaked(tmp_path / out)
    assert not leaked(run_context.home.root)


def test_the_scrub_section_decides_what_is_redacted(
    run_context: RunContext, slack: FakeSlack, tmp_path: Path
) -> None:
    result = run_ingest(
        run_context, "slack", SlackApiSource, api_config(slack), tmp_path / "d.jsonl", emails=False
    )
    assert result.report.scrubbed == {"slack_token": 1, "aws_access_key": 1}
    assert EMAIL in result.paths.train.read_text(encoding="utf-8") + (
        result.paths.eval.read_text(encoding="utf-8") if result.paths.eval.exists() else ""
    )


def test_the_message_scrubber_redacts_every_text_leaf(run_context: RunContext) -> None:
    raw = {
        "ts": "1.000001",
        "text": "",
        "blocks": [
            *rich_text(f"mail {EMAIL}"),
            {"type": "section", "text": {"type": "mrkdwn", "text": f"or {BLOCK_EMAIL}"}},
        ],
        "attachments": [{"fallback": f"token {TOKEN}", "text": f"token {TOKEN}"}],
        "files": [{"title": f"{EMAIL}.txt", "preview": f"AWS_KEY={AWS_KEY}"}],
    }
    redacted, counts = MessageScrubber(run_context.hook)(raw)
    assert not any(secret in str(redacted) for secret in SECRETS)
    assert TOKEN in str(raw), "the argument is left alone"
    # what the text built from the blocks holds; attachments and files are not that text
    assert counts == {"email": 2}
    assert redacted["ts"] == raw["ts"] and redacted["blocks"][1]["type"] == "section"


def test_text_split_over_leaves_is_left_for_ingest_to_count(run_context: RunContext) -> None:
    # Neither leaf is an email; the text rebuilt from them is, and ingest redacts and counts it.
    raw = {"ts": "1.000001", "text": "", "blocks": rich_text("write to ann.lee@", "example.com today")}
    assert MessageScrubber(run_context.hook)(raw)[1] == {}, "counted by ingest, so not here too"
    whole = {"ts": "1.000002", "text": "", "blocks": rich_text(f"write to {EMAIL}", " today")}
    assert MessageScrubber(run_context.hook)(whole)[1] == {"email": 1}
