"""The formatters inside ``ingest``: labels, sessions, scrubbing and the held-out split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from doppelkit.config import RunConfig
from doppelkit.interfaces import RunContext
from doppelkit.models import Example, Thread, User, Workspace
from doppelkit.pipeline import eval_share, ingest
from doppelkit.settings import DatasetConfig, ScrubConfig
from doppelkit.testing.samples import ANN, BOB, PERSONA_ID, TEAM, message
from doppelkit.testing.workspaces import ingest_config

WORKSPACE = Workspace(
    team=TEAM,
    users=[
        User(id=PERSONA_ID, display_name="Erik"),
        User(id=ANN, display_name="Ann"),
        User(id=BOB, real_name="Bob Builder"),
    ],
)


def workspace_threads(n_threads: int = 40) -> list[Thread]:
    threads = []
    for i in range(n_threads):
        base = 10_000 * i
        root = message(base, ANN, f"question {i} for <@{PERSONA_ID}>?", thread_ts=f"{base:.6f}")
        reply = message(
            base + 1,
            PERSONA_ID,
            f"answer {i}: call me at +1 415 555 0100, key AKIAABCDEFGHIJKLMNOP",
            thread_ts=f"{base:.6f}",
        )
        threads.append(
            Thread(team=TEAM, channel="C0GEN", channel_name="general", ts=root.ts, messages=[root, reply])
        )
    # two lone channel messages a minute apart: one conversation with sessions on
    threads.append(
        Thread(team=TEAM, channel="C0GEN", ts="900000.000000", messages=[message(900_000, BOB, "lunch?")])
    )
    threads.append(
        Thread(
            team=TEAM,
            channel="C0GEN",
            ts="900060.000000",
            messages=[message(900_060, PERSONA_ID, "yes, the usual place at noon, see you there")],
        )
    )
    return threads


def run_config(home: Path, scrub: ScrubConfig | None = None, **formatter_options: Any) -> RunConfig:
    return ingest_config(home, WORKSPACE, workspace_threads(), "Erik", scrub=scrub, **formatter_options)


def read(path: Path) -> list[Example]:
    if not path.exists():
        return []
    return [Example.model_validate_json(line) for line in path.read_text().splitlines()]


def test_ingest_writes_scrubbed_labelled_examples(run_context: RunContext) -> None:
    result = ingest(run_config(run_context.home.root), run_context)
    examples = read(result.paths.train) + read(result.paths.eval)
    assert len(examples) == 41  # 40 thread replies + the lone "yes, the usual place…" message
    text = result.paths.train.read_text()
    assert "AKIA" not in text and "[REDACTED:aws_access_key]" in text
    assert "+1 415 555 0100" in text, "phones are off by default"
    assert result.report.scrubbed == {"aws_access_key": 40}
    first = next(ex for ex in examples if ex.meta["thread_ts"] == "0.000000")
    assert first.messages[1].content == "Ann: question 0 for @Erik?"


def test_scrub_config_switches_scrubbers(run_context: RunContext) -> None:
    scrub = ScrubConfig(secrets=False, phones=True)
    result = ingest(run_config(run_context.home.root, scrub=scrub), run_context)
    text = result.paths.train.read_text() + result.paths.eval.read_text()
    assert "AKIAABCDEFGHIJKLMNOP" in text
    assert "[REDACTED:phone]" in text
    assert result.report.scrubbed == {"phone": 40}


def test_sessions_give_lone_messages_their_context(run_context: RunContext) -> None:
    result = ingest(run_config(run_context.home.root, session_gap_minutes=5), run_context)
    examples = read(result.paths.train) + read(result.paths.eval)
    lunch = next(ex for ex in examples if ex.response.startswith("yes, the usual place"))
    assert lunch.meta["thread_kind"] == "session"
    assert lunch.messages[1].content == "Bob Builder: lunch?"
    assert result.report.threads_seen == 41


def test_the_held_out_split_is_by_thread_and_deterministic(run_context: RunContext) -> None:
    first = ingest(run_config(run_context.home.root, eval_fraction=0.3), run_context)
    train, held = read(first.paths.train), read(first.paths.eval)
    assert train and held
    train_threads = {ex.meta["thread_ts"] for ex in train}
    held_threads = {ex.meta["thread_ts"] for ex in held}
    assert not train_threads & held_threads, "no thread on both sides"
    again = ingest(run_config(run_context.home.root, eval_fraction=0.3), run_context)
    assert again.paths.train.read_text() == first.paths.train.read_text()
    assert again.paths.eval.read_text() == first.paths.eval.read_text()
    assert first.report.eval_examples == len(held)


def test_eval_fraction_defaults_to_a_tenth_and_is_validated() -> None:
    assert DatasetConfig().eval_fraction == 0.1
    with pytest.raises(ValueError):
        DatasetConfig(eval_fraction=1.0)
    threads = workspace_threads(400)
    held = sum(eval_share(t, 0.1) for t in threads)
    assert 20 <= held <= 60


def test_the_report_is_json(run_context: RunContext) -> None:
    result = ingest(run_config(run_context.home.root), run_context)
    report = json.loads(result.paths.report.read_text())
    assert report["candidate_persona_messages"] == 41
    assert report["scrubbed"] == {"aws_access_key": 40}
