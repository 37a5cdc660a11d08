"""The workspace corpus ingest writes for shared base models: persona-independent, train split only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doppelkit.corpus import read_corpus
from doppelkit.errors import InputDataError, PersonaError
from doppelkit.interfaces import RunContext
from doppelkit.models import Thread, User, Workspace
from doppelkit.pipeline import IngestResult, eval_share, ingest
from doppelkit.testing.samples import message
from doppelkit.testing.workspaces import ingest_config

TEAM = "T0CORPUS"
MAYA, ERIK, ANN, BOT, QUIET = "U0MAYA", "U0ERIK", "U0ANN", "U0BOT", "U0QUIET"
WORKSPACE = Workspace(
    team=TEAM,
    users=[
        User(id=MAYA, display_name="maya"),
        User(id=ERIK, display_name="erik"),
        User(id=ANN, display_name="Ann"),
        User(id=QUIET, display_name="quiet"),
    ],
)
FRACTION = 0.3


def workspace_threads(n: int = 30) -> list[Thread]:
    """``n`` public threads, each marked ``t<i>`` in every message, plus one private thread."""
    threads = []
    for i in range(n):
        base, ts = 1_000 * i, f"{1_000 * i:.6f}"
        messages = [
            message(base, ANN, f"question t{i} for <@{ERIK}> &amp; <@{MAYA}>?", thread_ts=ts),
            message(base + 1, ANN, "JOINEVENT", subtype="channel_join", thread_ts=ts),
            message(base + 2, BOT, f"BOTTEXT t{i}", is_bot=True, subtype="bot_message", thread_ts=ts),
            message(base + 3, MAYA, f"maya answers t{i} with a reasonably long message", thread_ts=ts),
            message(base + 4, ERIK, f"erik answers t{i} too, key AKIAABCDEFGHIJKLMNOP", thread_ts=ts),
        ]
        threads.append(Thread(team=TEAM, channel="C0GEN", channel_name="general", ts=ts, messages=messages))
    private = [message(9e6, MAYA, "PRIVATE-SECRET plans for the reorg, please keep this quiet")]
    threads.append(Thread(team=TEAM, channel="G0PRIV", ts=private[0].ts, messages=private, private=True))
    return threads


def ingest_persona(
    home: Path, context: RunContext, persona: str, threads: list[Thread] | None = None
) -> IngestResult:
    run = ingest_config(home, WORKSPACE, threads or workspace_threads(), persona, eval_fraction=FRACTION)
    return ingest(run, context)


def corpus_of(result: IngestResult) -> list[str]:
    """Each conversation of the ingest's corpus as ``Name: text`` lines."""
    conversations = read_corpus(Path(result.report.corpus_path), result.report.corpus_sha256)
    return ["\n".join(f"{m.speaker}: {m.text}" for m in said) for said in conversations]


def test_every_persona_of_a_workspace_gets_the_same_corpus(run_context: RunContext) -> None:
    home = run_context.home.root
    maya = ingest_persona(home, run_context, "maya")
    erik = ingest_persona(home, run_context, "erik")
    assert maya.report.corpus_sha256 and maya.report.corpus_sha256 == erik.report.corpus_sha256
    assert maya.report.corpus_path == erik.report.corpus_path
    path = Path(maya.report.corpus_path)
    assert path.parent == run_context.home.corpus(TEAM)
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temp files left"
    again = ingest_persona(home, run_context, "maya")
    assert again.report.corpus_sha256 == maya.report.corpus_sha256, "deterministic"
    recorded = json.loads(maya.paths.report.read_text())
    assert recorded["corpus_sha256"] == maya.report.corpus_sha256


def test_held_out_threads_never_enter_the_corpus(run_context: RunContext) -> None:
    threads = workspace_threads()
    held = {f"t{i}" for i, t in enumerate(threads[:-1]) if eval_share(t, FRACTION)}
    kept = {f"t{i}" for i in range(len(threads) - 1)} - held
    assert held and kept
    documents = corpus_of(ingest_persona(run_context.home.root, run_context, "maya", threads))
    marks = {word.rstrip("?") for doc in documents for word in doc.split() if word.startswith("t")}
    assert {m for m in marks if m[1:].isdigit()} == kept
    assert len(documents) == len(kept)


def test_the_corpus_is_the_scrubbed_public_human_text_of_everyone(run_context: RunContext) -> None:
    documents = corpus_of(ingest_persona(run_context.home.root, run_context, "erik"))
    text = "\n".join(documents)
    assert "Ann: question t" in text and "maya: maya answers" in text and "erik: erik answers" in text
    assert "for @erik & @maya?" in text, "mrkdwn cleaned, with everyone's labels"
    assert "AKIA" not in text and "[REDACTED:aws_access_key]" in text
    for absent in ("BOTTEXT", "JOINEVENT", "PRIVATE-SECRET"):
        assert absent not in text


def test_another_export_gives_another_corpus(run_context: RunContext) -> None:
    home = run_context.home.root
    first = ingest_persona(home, run_context, "maya")
    changed = workspace_threads()
    changed[0] = changed[0].model_copy(update={"messages": changed[0].messages[:1]})
    second = ingest_persona(home, run_context, "maya", changed)
    assert first.report.corpus_sha256 != second.report.corpus_sha256
    assert Path(first.report.corpus_path).is_file(), "the corpus an earlier dataset names stays"


def test_a_failed_ingest_leaves_no_corpus(run_context: RunContext) -> None:
    with pytest.raises(PersonaError):
        ingest_persona(run_context.home.root, run_context, "quiet")
    directory = run_context.home.corpus(TEAM)
    assert not directory.exists() or not list(directory.iterdir())


def test_a_changed_corpus_is_refused(run_context: RunContext) -> None:
    result = ingest_persona(run_context.home.root, run_context, "maya")
    path = Path(result.report.corpus_path)
    path.write_text('{"messages": []}\n', encoding="utf-8")
    with pytest.raises(InputDataError, match="run `doppelkit ingest` again"):
        read_corpus(path, result.report.corpus_sha256)
