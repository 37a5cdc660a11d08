"""The ``slack`` Web API source against FakeSlack: the source contract, parity with the export
source under rate limits and capped pages, resuming without refetching, errors and options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_slack_exports import ROOT, fake_export, recent_export

from doppelkit.config import RunConfig, Selection, component_defaults
from doppelkit.errors import ConfigError, UserError
from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, Thread
from doppelkit.pipeline import ingest
from doppelkit.settings import Settings
from doppelkit.testing import run_cli
from doppelkit.testing.contracts import SourceContract
from doppelkit_slack.sources.api import SlackApiSource
from doppelkit_slack.sources.checkpoint import ChannelJournal, ScrapeCheckpoint
from doppelkit_slack.sources.export import SAMPLE_WORKSPACE, SlackExportSource
from doppelkit_slack.testing import FakeSlack
from doppelkit_slack.webclient import SlackAuthError, SlackUnavailableError

SAMPLE_TEAM = "T0LANTERN1"
# Slack's limits for non-Marketplace apps, scaled down to keep the tests fast: 15 messages per
# page, and per-method budgets that the scrape exceeds (so it meets 429 + Retry-After).
SAMPLE_LIMITS: dict[str, Any] = {
    "max_page_size": 15,
    "rate_limits": {"conversations.replies": (80, 0.25), "conversations.history": (15, 0.25)},
}


def api_source(slack: FakeSlack, context: RunContext, **options: Any) -> SlackApiSource:
    settings: dict[str, Any] = {"token": slack.token, "api_url": slack.url, "retry_backoff_s": 0.01}
    return SlackApiSource(SlackApiSource.Config(**{**settings, **options}), context)


def dumps(threads: Iterator[Thread] | list[Thread]) -> list[dict[str, Any]]:
    return [t.model_dump() for t in threads]


def export_threads(context: RunContext, path: Path | None = None, **options: Any) -> list[dict[str, Any]]:
    source = SlackExportSource(SlackExportSource.Config(path=path, **options), context)
    return dumps(source.threads(DatasetReport()))


def scrape_dir(context: RunContext, team: str = SAMPLE_TEAM) -> Path:
    return context.home.state / "scrape" / team


def finished_threads(slack: FakeSlack) -> set[str]:
    """Threads whose last replies page the server answered successfully."""
    return {
        c.params["ts"]
        for c in slack.calls_to("conversations.replies")
        if c.ok and c.response is not None and not c.response.get("has_more")
    }


@pytest.fixture
def small_export(tmp_path: Path) -> Path:
    return fake_export(tmp_path / "export")


@pytest.fixture
def sample_slack() -> Iterator[FakeSlack]:
    with FakeSlack.from_export(SAMPLE_WORKSPACE, **SAMPLE_LIMITS) as slack:
        yield slack


class TestContract(SourceContract):
    @pytest.fixture
    def source(self, run_context: RunContext, small_export: Path) -> Iterator[SlackApiSource]:
        with FakeSlack.from_export(small_export, max_page_size=2) as slack:
            yield api_source(slack, run_context)


# -- the same workspace as the export source ----------------------------------------------


def test_scraping_the_sample_under_limits_yields_the_export_sources_threads(
    run_context: RunContext, sample_slack: FakeSlack
) -> None:
    # Whether the budgets bite depends on this machine's speed; these 429s come for sure.
    sample_slack.inject_fault("conversations.history", "ratelimited", nth=3, retry_after=0.1)
    sample_slack.inject_fault("conversations.replies", "ratelimited", nth=10, times=3)
    report = DatasetReport()
    scraped = dumps(api_source(sample_slack, run_context, max_concurrency=4).threads(report))
    assert scraped == export_threads(run_context)
    assert sample_slack.count(status=429) >= 4, "the scrape met rate limits and rode them out"
    # the server capped pages at 15; the scraper noticed and asked for 15 from then on
    asked = [int(c.params["limit"]) for c in sample_slack.calls_to("conversations.replies")]
    assert asked[-1] == 15
    assert "at most 15 messages per page" in run_context.console.file.getvalue()  # type: ignore[attr-defined]
    # public channels only: never listed private channels or DMs, never read one
    assert {c.params["types"] for c in sample_slack.calls_to("conversations.list")} == {"public_channel"}
    read = {c.params["channel"] for c in sample_slack.calls if "channel" in c.params}
    assert read and all(channel.startswith("C") for channel in read)
    assert report.drops["channel_join"] > 0
    assert not scrape_dir(run_context).exists(), "raw messages are deleted once the scrape is consumed"


def test_ingest_writes_the_same_examples_from_either_source(
    run_context: RunContext, sample_slack: FakeSlack, tmp_path: Path
) -> None:
    from doppelkit.builtins.formatters import ChatFormatter

    def run(name: str, source_cls: type[Any], config: Any) -> list[str]:
        out = tmp_path / name / "maya.jsonl"
        settings = Settings.model_validate(
            {"home": run_context.home.root, "persona": {"user": "maya"}, "dataset": {"path": out}}
        )
        selections = {
            "source": Selection("source", name, source_cls, config, "test"),
            "formatter": Selection("formatter", "chat", ChatFormatter, ChatFormatter.Config(), "test"),
        }
        result = ingest(RunConfig(settings=settings, selections=selections), run_context)
        assert result.report.examples_kept > 300
        lines = out.read_text(encoding="utf-8").splitlines()
        if result.paths.eval.exists():
            lines += result.paths.eval.read_text(encoding="utf-8").splitlines()
        return lines

    from_export = run("slack_export", SlackExportSource, SlackExportSource.Config())
    config = SlackApiSource.Config(token=sample_slack.token, api_url=sample_slack.url, retry_backoff_s=0.01)
    from_api = run("slack", SlackApiSource, config)
    assert from_api == from_export


def test_private_channels_only_on_opt_in_and_dms_never(run_context: RunContext, small_export: Path) -> None:
    with FakeSlack.from_export(small_export) as slack:
        default = dumps(api_source(slack, run_context).threads(DatasetReport()))
        opted = dumps(api_source(slack, run_context, include_private=True).threads(DatasetReport()))
        assert {t["channel"] for t in default} == {"C1GEN"}, "archived and private channels are left out"
        assert {t["channel"] for t in opted} == {"C1GEN", "G1SEC"}
        assert all(t["private"] for t in opted if t["channel"] == "G1SEC")
        assert all("im" not in c.params.get("types", "") for c in slack.calls_to("conversations.list"))
        assert not [c for c in slack.calls if str(c.params.get("channel", "")).startswith("D")]
        from_export = export_threads(run_context, small_export, include_private=True)
        assert opted == [t for t in from_export if t["channel"] != "C2OLD"]  # the API lists no archived ones


# -- resuming ----------------------------------------------------------------------------


def test_a_scrape_killed_midway_restarts_without_refetching_finished_threads(
    run_context: RunContext, sample_slack: FakeSlack
) -> None:
    # From the 120th conversations.replies call on, the server fails for good: the scrape
    # stops with a clear error after its retries, as if the network died.
    sample_slack.inject_fault("conversations.replies", nth=120, times=None, status=500)
    source = api_source(sample_slack, run_context, max_retries=1, max_concurrency=3)
    with pytest.raises(SlackUnavailableError, match="run the same command again to resume") as failure:
        list(source.threads(DatasetReport()))
    assert "HTTP 500" in str(failure.value)
    finished = finished_threads(sample_slack)
    histories_done = {
        c.params["channel"]
        for c in sample_slack.calls_to("conversations.history")
        if c.ok and not (c.response or {}).get("has_more")
    }
    assert len(finished) > 50 and histories_done
    assert (scrape_dir(run_context) / "plan.json").is_file()

    sample_slack.clear_faults()
    sample_slack.reset_calls()
    resumed = dumps(api_source(sample_slack, run_context, max_concurrency=3).threads(DatasetReport()))
    refetched = [c.params["ts"] for c in sample_slack.calls_to("conversations.replies")]
    assert refetched, "the unfinished threads were fetched"
    assert not finished & set(refetched), "no finished thread was fetched again"
    assert not histories_done & {c.params["channel"] for c in sample_slack.calls_to("conversations.history")}
    assert sample_slack.count("conversations.list") == 0, "the channel list comes from the checkpoint"
    assert resumed == export_threads(run_context), "ingest still gets every thread"
    assert "not fetched again" in run_context.console.file.getvalue()  # type: ignore[attr-defined]
    assert not scrape_dir(run_context).exists()


KILLED_SCRAPE = """
import sys
from doppelkit.models import DatasetReport
from doppelkit.testing.helpers import make_context
from doppelkit_slack.sources.api import SlackApiSource
from doppelkit_slack.sources.checkpoint import ChannelJournal, ScrapeCheckpoint

home, token, url = sys.argv[1:]
config = SlackApiSource.Config(token=token, api_url=url, max_concurrency=3)
for _ in SlackApiSource(config, make_context(home)).threads(DatasetReport()):
    pass
"""


def test_a_scrape_killed_with_sigkill_resumes_from_its_journal(run_context: RunContext) -> None:
    with FakeSlack.from_export(SAMPLE_WORKSPACE, max_page_size=15, latency=0.003) as slack:
        home = str(run_context.home.root)
        process = subprocess.Popen([sys.executable, "-c", KILLED_SCRAPE, home, slack.token or "", slack.url])
        try:
            deadline = time.monotonic() + 60
            while slack.count("conversations.replies") < 100 and process.poll() is None:
                assert time.monotonic() < deadline, "the scrape never got going"
                time.sleep(0.01)
        finally:
            process.kill()  # SIGKILL: no cleanup, no finally blocks
            process.wait()
        journaled = set()
        for journal in (scrape_dir(run_context) / "channels").glob("*.jsonl"):
            journaled |= set(ChannelJournal(journal).load().threads)
        finished = finished_threads(slack)
        assert len(journaled) >= 50

        slack.reset_calls()
        resumed = dumps(api_source(slack, run_context).threads(DatasetReport()))
        refetched = {c.params["ts"] for c in slack.calls_to("conversations.replies")}
        assert not journaled & refetched, "no thread the killed scrape had saved is fetched again"
        # only threads whose last page was in flight at the kill can be fetched twice
        assert len(finished & refetched) <= 3
        assert resumed == export_threads(run_context)


def test_a_stream_closed_early_resumes_and_survives_a_torn_journal(
    run_context: RunContext, small_export: Path
) -> None:
    with FakeSlack.from_export(small_export, max_page_size=2) as slack:
        stream = api_source(slack, run_context).threads(DatasetReport())
        first = next(stream)  # the first channel is complete once its first thread is out
        stream.close()  # the consumer died (e.g. the ingest crashed)
        journal = scrape_dir(run_context, "T0TEST0001") / "channels" / "C1GEN.jsonl"
        assert journal.is_file()
        with journal.open("ab") as fh:
            fh.write(b'{"thread": "170410')  # a record torn by a kill mid-write
        slack.reset_calls()
        again = dumps(api_source(slack, run_context).threads(DatasetReport()))
        assert again[0] == first.model_dump()
        assert slack.count("conversations.history") == slack.count("conversations.replies") == 0
        assert again == dumps(api_source(slack, run_context).threads(DatasetReport()))


def test_network_failure_is_a_clear_error_and_the_checkpoint_stays_valid(
    run_context: RunContext, small_export: Path
) -> None:
    with FakeSlack.from_export(small_export, max_page_size=2) as slack:
        slack.inject_fault("conversations.history", "drop", nth=3, times=None)
        with pytest.raises(SlackUnavailableError, match="Could not reach Slack") as failure:
            list(api_source(slack, run_context, max_retries=2).threads(DatasetReport()))
        assert "resume" in str(failure.value)
        assert slack.count("conversations.history") == 2 + 3  # two pages, then 1 try + 2 retries
        slack.clear_faults()
        slack.reset_calls()
        threads = dumps(api_source(slack, run_context).threads(DatasetReport()))
        cursors = [c.params.get("cursor") for c in slack.calls_to("conversations.history")]
        assert cursors[0] is None and slack.calls_to("conversations.history")[0].params["inclusive"] in (
            "0",
            0,
        )
        assert threads == dumps(api_source(slack, run_context).threads(DatasetReport()))


def test_resume_false_starts_over(run_context: RunContext, small_export: Path) -> None:
    with FakeSlack.from_export(small_export) as slack:
        stream = api_source(slack, run_context).threads(DatasetReport())
        next(stream)
        stream.close()
        slack.reset_calls()
        list(api_source(slack, run_context, resume=False).threads(DatasetReport()))
        assert slack.count("conversations.list") == 1 and slack.count("conversations.history") == 1
        assert "over" in run_context.console.file.getvalue()  # type: ignore[attr-defined]


def test_two_scrapes_of_one_team_cannot_run_at_once(run_context: RunContext, small_export: Path) -> None:
    with FakeSlack.from_export(small_export) as slack:
        with (
            ScrapeCheckpoint(scrape_dir(run_context, "T0TEST0001")).locked(),
            pytest.raises(UserError, match="Another scrape of this workspace is running"),
        ):
            list(api_source(slack, run_context).threads(DatasetReport()))
        assert list(api_source(slack, run_context).threads(DatasetReport())), "released: it runs"


# -- limits, errors and options -----------------------------------------------------------


def test_rate_limits_that_never_lift_are_a_clear_error(run_context: RunContext, small_export: Path) -> None:
    limits = {"conversations.history": (1, 30.0)}
    with FakeSlack.from_export(small_export, rate_limits=limits, retry_after=0.01, max_page_size=2) as slack:
        with pytest.raises(SlackUnavailableError, match="rate-limiting conversations.history"):
            list(api_source(slack, run_context, max_retries=2).threads(DatasetReport()))
        assert slack.count("conversations.history", status=429) == 3


def test_concurrency_is_bounded(run_context: RunContext, tmp_path: Path) -> None:
    with FakeSlack.from_export(recent_export(tmp_path / "export", threads=12), latency=0.02) as slack:
        threads = list(api_source(slack, run_context, max_concurrency=2).threads(DatasetReport()))
        assert len(threads) == 13
        assert slack.max_in_flight == 2


def test_cutoff_days_reads_only_recent_threads(run_context: RunContext, tmp_path: Path) -> None:
    with FakeSlack.from_export(recent_export(tmp_path / "export", threads=3, days_ago=5)) as slack:
        everything = list(api_source(slack, run_context).threads(DatasetReport()))
        recent = list(api_source(slack, run_context, cutoff_days=30).threads(DatasetReport()))
        assert len(everything) == 4 and len(recent) == 3
        assert all(m.text != "an old question" for t in recent for m in t.messages)
        assert all(len(t.messages) == 4 for t in recent)
        assert list(api_source(slack, run_context, cutoff_days=1).threads(DatasetReport())) == []


def test_channels_the_bot_is_not_in_are_skipped_or_joined(
    run_context: RunContext, small_export: Path
) -> None:
    with FakeSlack.from_export(small_export, joined_channels=[]) as slack:
        report = DatasetReport()
        assert list(api_source(slack, run_context).threads(report)) == []
        assert report.drops["not_in_channel"] == 1
        assert "source.join_channels=true" in run_context.console.file.getvalue()  # type: ignore[attr-defined]
        joined = list(api_source(slack, run_context, join_channels=True).threads(DatasetReport()))
        assert joined and slack.count("conversations.join") == 1


def test_channels_filter(run_context: RunContext, small_export: Path) -> None:
    with FakeSlack.from_export(small_export) as slack:
        only = list(api_source(slack, run_context, channels=["#general"]).threads(DatasetReport()))
        assert {t.channel for t in only} == {"C1GEN"}
        with pytest.raises(ConfigError, match="'random'.*available: general"):
            list(api_source(slack, run_context, channels=["random"]).threads(DatasetReport()))


def test_a_bad_token_is_a_clear_error_without_the_token(
    run_context: RunContext, small_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeSlack.from_export(small_export) as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-wrong-secret")
        source = SlackApiSource(SlackApiSource.Config(api_url=slack.url), run_context)
        with pytest.raises(SlackAuthError, match="invalid_auth.*SLACK_BOT_TOKEN") as failure:
            source.workspace()
        assert "wrong-secret" not in str(failure.value)
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token or "")
        assert source.workspace().team == "T0TEST0001", "the token comes from SLACK_BOT_TOKEN"
        monkeypatch.delenv("SLACK_BOT_TOKEN")
        with pytest.raises(SlackAuthError, match="No Slack token"):
            SlackApiSource(SlackApiSource.Config(api_url=slack.url), run_context).workspace()


def test_a_missing_scope_is_named(run_context: RunContext, small_export: Path) -> None:
    scopes = {"users:read", "channels:read"}
    with (
        FakeSlack.from_export(small_export, scopes=scopes) as slack,
        pytest.raises(SlackAuthError, match="channels:history.*conversations.history"),
    ):
        list(api_source(slack, run_context).threads(DatasetReport()))


def test_config_is_strict_and_keeps_the_token_secret() -> None:
    config = SlackApiSource.Config(token="xoxb-very-secret", channels=["#general", "C1"])
    assert "very-secret" not in repr(config) and "very-secret" not in config.model_dump_json()
    assert config.channels == ["general", "C1"]
    assert component_defaults(SlackApiSource.Config)["token"] is None, "no env token leaks into configs"
    for bad in (
        {"tokn": "x"},
        {"team": "../x"},
        {"page_size": 0},
        {"cutoff_days": 0},
        {"max_concurrency": 0},
    ):
        with pytest.raises(ValueError):
            SlackApiSource.Config.model_validate(bad)


def test_the_thread_stream_includes_replies_from_later_days(
    run_context: RunContext, small_export: Path
) -> None:
    with FakeSlack.from_export(small_export, max_page_size=2) as slack:
        threads = {t.ts: t for t in api_source(slack, run_context).threads(DatasetReport())}
        assert [m.text for m in threads[ROOT].messages][-1] == "reply c, a day later"
        assert sum(m.text == "reply b, also in channel" for m in threads[ROOT].messages) == 1


def test_doppelkit_ingest_source_slack_end_to_end(tmp_path: Path) -> None:
    with FakeSlack.from_export(SAMPLE_WORKSPACE, max_page_size=15) as slack:
        out = tmp_path / "out" / "maya.jsonl"
        env = {"DOPPELKIT_LOAD_PLUGINS": "slack", "SLACK_BOT_TOKEN": slack.token or ""}
        result = run_cli(
            [
                "ingest",
                "source=slack",
                f"source.api_url={slack.url}",
                "source.retry_backoff_s=0.01",
                "persona.user=maya",
                f"dataset.path={out}",
                f"home={tmp_path / 'home'}",
            ],
            cwd=tmp_path,
            env={**os.environ, **env},
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert slack.token not in output
        report = json.loads(out.with_name("maya.report.json").read_text(encoding="utf-8"))
        assert report["source"] == "slack" and report["team"] == SAMPLE_TEAM
        assert report["examples_kept"] > 300


def test_a_deleted_thread_root_is_counted_once_as_by_the_export_source(
    run_context: RunContext, tmp_path: Path
) -> None:
    """Issue 11, class 9: the Web API gives a deleted root (a tombstone) in the channel's history
    and again at the head of its thread; the report counts it once, as the export source does."""
    from slack_export_builders import channel, message, write_export

    root = "1704100000.000100"
    export = write_export(
        tmp_path / "export",
        {
            "general/2024-01-01.json": [
                message(
                    root,
                    "USLACKBOT",
                    "This message was deleted.",
                    subtype="tombstone",
                    hidden=True,
                    thread_ts=root,
                    reply_count=2,
                    latest_reply="1704100200.000100",
                ),
                message("1704100100.000100", "U1ANN", "a reply that outlived its root", thread_ts=root),
                message("1704100200.000100", "U2BOB", "another one", thread_ts=root),
                message(
                    "1704100300.000100", "U2BOB", "<@U2BOB> has joined the channel", subtype="channel_join"
                ),
            ]
        },
        channels=[channel("C1GEN", "general")],
    )
    exported = DatasetReport()
    export_source = SlackExportSource(SlackExportSource.Config(path=export), run_context)
    from_export = dumps(export_source.threads(exported))
    scraped = DatasetReport()
    with FakeSlack.from_export(export) as slack:
        from_api = dumps(api_source(slack, run_context).threads(scraped))
        assert slack.calls_to("conversations.replies"), "the thread was fetched, its root with it"
    assert from_api == from_export
    assert scraped.drops == exported.drops == {"deleted": 1, "channel_join": 1}
