"""``model=tiny`` per workspace: personas ingested from one export share one base, served together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from engine_testkit import make_engine
from lora_testkit import SMALL_TINY, fast_config

from doppelkit.builtins.formatters import ChatFormatter
from doppelkit.builtins.formatters.turns import join_reply
from doppelkit.corpus import Said
from doppelkit.errors import UserError
from doppelkit.interfaces import RunContext, TrainJob, TrainResult
from doppelkit.models import Message, Thread, User, Workspace
from doppelkit.pipeline import IngestResult, ingest
from doppelkit.settings import ModelConfig
from doppelkit.testing.samples import message
from doppelkit.testing.workspaces import ingest_config
from doppelkit_lora.model import tiny
from doppelkit_lora.train.base_corpus import pretraining_texts
from doppelkit_lora.train.trainer import LoraConfig, LoraTrainer

TEAM = "T0SHARED"
MAYA, ERIK, ANN = "U0MAYA", "U0ERIK", "U0ANN"
WORKSPACE = Workspace(
    team=TEAM,
    users=[
        User(id=MAYA, display_name="maya"),
        User(id=ERIK, display_name="erik"),
        User(id=ANN, display_name="Ann"),
    ],
)
QUESTIONS = ["did the deploy go out?", "can someone review my PR?", "lunch at noon?", "why is CI red?"]
MAYA_SAYS = "yep on it :rocket: shipping in ten minutes, all green so far!!"
ERIK_SAYS = "I would wait until tomorrow morning; the migration is still running."


def workspace_threads(n: int = 24) -> list[Thread]:
    threads = []
    for i in range(n):
        ts = f"{1_000 * i:.6f}"
        messages = [
            message(1_000 * i, ANN, f"{QUESTIONS[i % len(QUESTIONS)]} #{i}", thread_ts=ts),
            message(1_000 * i + 1, MAYA, MAYA_SAYS, thread_ts=ts),
            message(1_000 * i + 2, ERIK, ERIK_SAYS, thread_ts=ts),
        ]
        threads.append(Thread(team=TEAM, channel="C0GEN", channel_name="general", ts=ts, messages=messages))
    return threads


def quick(**overrides: Any) -> LoraConfig:
    """Only what these tests look at: which base, and that the adapters serve."""
    tiny_base = SMALL_TINY.model_copy(update={"pretrain_steps": 4})
    return fast_config(
        max_steps=2, eval_every=0, checkpoint_every=0, report_samples=0, tiny=tiny_base, **overrides
    )


def ingest_and_train(
    context: RunContext, model: ModelConfig, persona: str, threads: list[Thread], config: LoraConfig
) -> tuple[IngestResult, TrainResult]:
    run = ingest_config(context.home.root, WORKSPACE, threads, persona, eval_fraction=0.25)
    ingested = ingest(run, context)
    job = TrainJob(
        persona=ingested.persona,
        dataset=ingested.paths.train,
        eval_dataset=ingested.paths.eval,
        formatter=ChatFormatter(ChatFormatter.Config(), context),
        model=model,
        report=ingested.report,
    )
    return ingested, LoraTrainer(config, context).train(job)


def manifest(result: TrainResult) -> dict[str, Any]:
    return json.loads((result.adapter_dir / "manifest.json").read_text())


def built_bases(context: RunContext) -> list[Path]:
    return [p for p in (context.home.cache / "tiny").iterdir() if tiny.is_built(p)]


def question(text: str) -> Thread:
    return Thread(
        team=TEAM,
        channel="C0GEN",
        channel_name="general",
        ts="9000000.000000",
        messages=[Message(ts="9000000.000000", user=ANN, text=text)],
        user_labels={ANN: "Ann"},
    )


def test_personas_of_one_workspace_share_one_tiny_base_and_one_engine(
    run_context_cpu: RunContext, model_config: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []
    pretrain = tiny.pretrain
    monkeypatch.setattr(tiny, "pretrain", lambda *a, **k: builds.append(1) or pretrain(*a, **k))
    threads = workspace_threads()
    # maya's run deletes its dataset and the corpus after publishing (as for API scrapes) ...
    maya_data, maya = ingest_and_train(
        run_context_cpu, model_config, "maya", threads, quick(delete_dataset_after=True)
    )
    assert not Path(maya_data.report.corpus_path).exists()
    # ... and erik's ingest writes the same corpus again: same base key, no second build.
    erik_data, erik = ingest_and_train(run_context_cpu, model_config, "erik", threads, quick())
    assert erik_data.report.corpus_sha256 == maya_data.report.corpus_sha256
    assert manifest(maya)["model_revision"] == manifest(erik)["model_revision"]
    assert len(builds) == 1 and len(built_bases(run_context_cpu)) == 1
    marker = tiny.tokenizer_info(built_bases(run_context_cpu)[0])
    assert marker["team"] == TEAM and marker["corpus"].startswith("workspace corpus")

    with make_engine(run_context_cpu.home) as engine:
        personas = [maya_data.persona, erik_data.persona, maya_data.persona]
        replies = engine.reply_many([(p, question("did the deploy go out?")) for p in personas])
        assert len(replies) == 3
        assert engine.stats.base_loads == 1 and engine.stats.adapter_loads == 2
        assert engine.current_version(TEAM, MAYA) == engine.current_version(TEAM, ERIK) == "v1"


def test_a_persona_on_another_exports_base_is_refused_with_how_to_retrain(
    run_context_cpu: RunContext, model_config: ModelConfig
) -> None:
    threads = workspace_threads()
    maya_data, maya = ingest_and_train(run_context_cpu, model_config, "maya", threads, quick())
    newer = [*threads, *workspace_threads(26)[24:]]  # the workspace grew: another corpus, another base
    erik_data, erik = ingest_and_train(run_context_cpu, model_config, "erik", newer, quick())
    assert manifest(maya)["model_revision"] != manifest(erik)["model_revision"]

    with make_engine(run_context_cpu.home) as engine:
        assert engine.reply(maya_data.persona, question("lunch at noon?")) is not None
        with pytest.raises(UserError) as refused:
            engine.reply(erik_data.persona, question("lunch at noon?"))
    text = str(refused.value)
    assert "Retrain" in text and f"doppelkit persona.user={ERIK}" in text
    assert "same workspace export" in text and "maya (U0MAYA)" in text


def test_a_conversation_is_pretrained_as_a_transcript_and_as_each_persons_replies() -> None:
    said = [Said("Ann", "hi"), Said("maya", "one"), Said("maya", "two"), Said("Ann", "ok")]
    assert pretraining_texts([said]) == [
        "Ann: hi\nmaya: one\nmaya: two\nAnn: ok",  # the shape of a user turn
        "hi",
        join_reply(["one", "two"]),  # the shape of an assistant turn
        "ok",
    ]
