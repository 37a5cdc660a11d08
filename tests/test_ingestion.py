"""Ingest's inner loop (doppelkit.ingestion): the same bytes in this process or over workers,
errors from workers, the progress bar, and the pieces that make it fast."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from doppelkit import ingestion
from doppelkit.corpus import corpus_line
from doppelkit.errors import InputDataError
from doppelkit.interfaces import Partition, RunContext
from doppelkit.models import DatasetReport, Message, SkippedFile, Thread, User, Workspace, updated
from doppelkit.pipeline import build_context, ingest
from doppelkit.testing.samples import message
from doppelkit.testing.workspaces import ingest_config

TEAM = "T0PARTS"
ANN, BOB, ERIK = "U0ANN", "U0BOB", "U0ERIK"
WORKSPACE = Workspace(
    team=TEAM,
    users=[
        User(id=ANN, display_name="Ann"),
        User(id=BOB, display_name="Bob"),
        User(id=ERIK, display_name="Erik"),
    ],
)


def lone(ts: float, user: str, text: str, channel: str) -> Thread:
    m = message(ts, user, text)
    return Thread(team=TEAM, channel=channel, channel_name=channel.lower(), ts=m.ts, messages=[m])


def replied(ts: float, channel: str, n: int) -> Thread:
    root = f"{ts:.6f}"
    messages = [message(ts, ANN, f"question {ts} for <@{ERIK}>, key AKIAIOSFODNN7EXAMPLE?", thread_ts=root)]
    for k in range(n):
        who = ERIK if k % 2 == 0 else BOB
        messages.append(
            message(
                ts + 1 + k,
                who,
                f"answer {k} in {channel}: a reasonably long reply, ann@example.com",
                thread_ts=root,
            )
        )
    return Thread(team=TEAM, channel=channel, channel_name=channel.lower(), ts=root, messages=messages)


def workspace_threads() -> list[Thread]:
    """Six channels: sessions left open at a channel's end must go on where a serial stream
    puts them (after the next channel's threads, before its first lone message), also across a
    channel without lone messages."""
    threads: list[Thread] = []
    t = 1_000_000.0
    for c, layout in enumerate(["LTL", "TT", "TLLT", "L", "TTT", "LLTLL"]):
        channel = f"C{c}"
        for i, kind in enumerate(layout):
            t += 60
            if kind == "L":
                who = ERIK if (t // 60) % 2 else ANN
                threads.append(
                    lone(t, who, f"lone words {t} from {who} in {channel}, long enough to count", channel)
                )
            else:
                threads.append(replied(t, channel, 1 + i % 3))
    return threads


def run(
    tmp_path: Path, run_context: RunContext, name: str, **options: Any
) -> tuple[dict[str, Any], list[bytes]]:
    home = tmp_path / name
    config = ingest_config(home, WORKSPACE, workspace_threads(), "Erik", eval_fraction=0.3, **options)
    context = build_context(config, run_context.hook, Console(file=io.StringIO()), run_context.registries)
    result = ingest(config, context)
    report = result.report.model_dump(
        mode="json", exclude={"created", "dataset_path", "eval_path", "corpus_path"}
    )
    files = [result.paths.train, result.paths.eval, Path(result.report.corpus_path)]
    return report, [f.read_bytes() for f in files]


@pytest.mark.parametrize("gap", [None, 30])
def test_workers_write_what_one_process_writes(
    tmp_path: Path, run_context: RunContext, gap: float | None
) -> None:
    expected_report, expected = run(tmp_path, run_context, "stream", session_gap_minutes=gap)
    for workers in (1, 2, 4):
        report, files = run(
            tmp_path,
            run_context,
            f"parts{workers}",
            partitioned=True,
            workers=workers,
            session_gap_minutes=gap,
        )
        assert files == expected, f"{workers} workers"
        drops = {k: v for k, v in report["drops"].items() if not k.startswith("read:")}
        assert {**report, "drops": drops, "source": "static"} == expected_report
        assert [k for k in report["drops"] if k.startswith("read:")] == sorted(f"read:C{c}" for c in range(6))
    assert expected_report["scrubbed"] == {"aws_access_key": 9, "email": 16}
    if gap:
        assert b'"thread_kind":"session"' in expected[0] + expected[1]


def test_an_error_in_a_worker_is_that_error_and_nothing_is_written(
    tmp_path: Path, run_context: RunContext
) -> None:
    threads = workspace_threads()
    threads.insert(3, lone(5.0, ANN, "FAIL-IN-PART", "C1"))
    home = tmp_path / "home"
    config = ingest_config(home, WORKSPACE, threads, "Erik", partitioned=True, workers=2)
    context = build_context(config, run_context.hook, Console(file=io.StringIO()), run_context.registries)
    with pytest.raises(InputDataError, match="part C1 is damaged"):
        ingest(config, context)
    assert [p for p in home.rglob("*") if p.is_file()] == []


def test_the_progress_bar_shows_messages_per_second(
    tmp_path: Path, run_context: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingestion, "PROGRESS_MIN_BYTES", 1)
    config = ingest_config(tmp_path, WORKSPACE, workspace_threads(), "Erik", partitioned=True, workers=1)
    terminal = io.StringIO()
    ingest(config, build_context(config, None, Console(file=terminal, force_terminal=True, width=160)))
    assert "messages/s" in terminal.getvalue() and "ingest" in terminal.getvalue()
    log = io.StringIO()  # not a terminal: no bar filling a log with redraws
    ingest(config, build_context(config, None, Console(file=log, width=160)))
    assert "messages/s" not in log.getvalue()


def test_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    big = [Partition(i, ingestion.PARALLEL_MIN_BYTES) for i in range(3)]
    small = [Partition(i, 10) for i in range(3)]
    monkeypatch.setattr(ingestion, "can_fork", lambda: True)
    monkeypatch.setattr(ingestion, "available_cores", lambda: 8)
    assert ingestion.worker_count(None, big) == 3  # a part per worker at most
    assert ingestion.worker_count(None, small) == 1  # not worth a process
    assert ingestion.worker_count(2, small) == 2  # asked for
    assert ingestion.worker_count(None, big[:1]) == 1
    monkeypatch.setattr(ingestion, "can_fork", lambda: False)
    assert ingestion.worker_count(4, big) == 1


def test_updated_is_model_copy() -> None:
    m = Message(ts="1.0", user=ANN, text="hi", subtype="me_message")
    assert updated(m, text="bye") == m.model_copy(update={"text": "bye"})
    assert (
        updated(m, text="bye").__pydantic_fields_set__
        == m.model_copy(update={"text": "bye"}).__pydantic_fields_set__
    )
    t = Thread(team=TEAM, channel="C", ts="1.0", messages=[m])
    copy = updated(t, user_labels={ANN: "Ann"})
    assert copy == t.model_copy(update={"user_labels": {ANN: "Ann"}}) and t.user_labels == {}


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        'quote " and \\ backslash',
        "tab\tnew\nline\r",
        "\x00\x01\x1f ctl",
        "é 日本 🚀",
        "\u2028\u2029",
        "",
    ],
)
def test_corpus_lines_are_json_dumps(text: str) -> None:
    said = [message(1, ANN, text), message(2, BOB, f"re: {text}")]
    labels = {ANN: 'A "n" \\ é'}
    thread = Thread(team=TEAM, channel="C", ts="1.000000", messages=said, user_labels=labels)
    turns = [(labels.get(m.user or "", m.user), m.text.strip()) for m in said if m.text.strip()]
    expected = {"messages": [{"speaker": who, "text": what} for who, what in turns]}
    assert corpus_line(thread, TEAM) == (json.dumps(expected, ensure_ascii=False) + "\n").encode()


def test_report_merge_counts_as_if_counted_here() -> None:
    a = DatasetReport(threads_seen=1, examples_kept=2, drops={"x": 1}, scrubbed={"email": 1})
    b = DatasetReport(
        threads_seen=3, messages_seen=4, eval_examples=1, drops={"y": 2, "x": 1}, scrubbed={"jwt": 2}
    )
    b.skipped_files.append(SkippedFile(path="p", reason="r"))
    a.merge(b)
    assert (a.threads_seen, a.messages_seen, a.examples_kept, a.eval_examples) == (4, 4, 2, 1)
    assert a.drops == {"x": 2, "y": 2} and list(a.drops) == ["x", "y"]
    assert a.scrubbed == {"email": 1, "jwt": 2} and a.skipped_files == b.skipped_files
    assert set(DatasetReport.COUNTS) == {
        k for k, f in DatasetReport.model_fields.items() if f.annotation is int
    }, "a new count must be merged"
