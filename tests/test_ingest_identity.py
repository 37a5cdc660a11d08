"""Speed work changed how ingest runs, not what it writes.

A mid-size synthetic export (20k messages in 8 channels, threads of 1–12 messages, the persona
writing 12%, a secret or an email planted in 2% of messages) is ingested

* with the scrubbers as they were (``scrub_reference``: every pattern on every text, in place
  of the built-in scrubbers), in this process;
* with today's code, in this process and over worker processes;

with and without time-gap sessions (which cross channel boundaries). Every run writes the same
dataset, held-out file and corpus, byte for byte, and those are the bytes doppelkit wrote
before the speed work (the sha256 pins below were taken with the code of commit 68ccd82, whose
ingest ran one pattern after another on each message, one thread at a time).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import scrub_reference
from rich.console import Console

from doppelkit import pipeline
from doppelkit.builtins import scrubbers
from doppelkit.config import compose, validate
from doppelkit.plugins import build_registries, get_plugin_manager

pytest.importorskip("doppelkit_slack")

from doppelkit_slack.testing.synthetic import PERSONA, Shape, generate

pytestmark = pytest.mark.slow

# sha256 of (dataset, held-out, corpus) written by commit 68ccd82 for this export.
BEFORE = {
    "threads": (
        "f3c5a2a8bf511ba491cb69c141124ef9b66907b4be1a009f82f896c7f5028773",
        "805b307648cd71016793527da76f40979943fcc86dccfed21dfc8fdbdd76bc72",
        "0b017f8230aef77b7f290f05f9a8524884359db5250ddc584476412b7a35c461",
    ),
    "sessions": (
        "17d45d51b5edd00d46c1eb106c5487cd6344af24fed45599f27a90b4bc41ced0",
        "05ab01ae0a7910c2e632098debc68468aceaec7415e8bd7245eaab5b935eb2a4",
        "2d991d40668ea9f15ae3a60da2c5fa83bb157fe14bf1226267029cba76f0296f",
    ),
}
SCRUBBED = {  # what the planted secrets and emails come to
    "anthropic_key": 22,
    "aws_access_key": 14,
    "bearer_token": 22,
    "email": 73,
    "github_token": 48,
    "google_api_key": 23,
    "jwt": 21,
    "openai_key": 33,
    "private_key": 29,
    "slack_token": 52,
    "slack_webhook": 19,
    "stripe_key": 32,
}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shape = Shape(thread_sizes=(1, 12), persona_share=0.12, secret_share=0.02)
    return generate(
        tmp_path_factory.mktemp("identity") / "export", 20_000, channels=8, compact=True, shape=shape
    )


def ingest(export: Path, home: Path, *overrides: str, reference_scrub: bool = False) -> tuple[str, ...]:
    """``doppelkit ingest`` in this process; the sha256 of what it wrote, and its report."""
    pm = get_plugin_manager(load_entrypoints=False)
    from doppelkit_slack import plugin as slack_plugin

    pm.register(slack_plugin)
    if reference_scrub:
        pm.unregister(scrubbers)
        pm.register(scrub_reference)
    registries = build_registries(pm)
    out = home / "out" / "dataset.jsonl"
    cfg = compose(
        [
            f"source.path={export}",
            f"persona.user={PERSONA}",
            f"home={home}",
            f"dataset.path={out}",
            *overrides,
        ],
        registries,
    )
    run = validate(cfg, registries, needs=("source", "formatter"))
    context = pipeline.build_context(run, pm.hook, Console(file=io.StringIO()), registries)
    result = pipeline.ingest(run, context)
    report = json.loads(result.paths.report.read_text(encoding="utf-8"))
    assert report["scrubbed"] == SCRUBBED
    files = (result.paths.train, result.paths.eval, Path(result.report.corpus_path))
    return tuple(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)


@pytest.mark.parametrize("sessions", ["threads", "sessions"])
def test_ingest_writes_what_it_wrote_before_the_speed_work(
    export: Path, tmp_path: Path, sessions: str
) -> None:
    extra = ["dataset.session_gap_minutes=30"] if sessions == "sessions" else []
    reference = ingest(export, tmp_path / "ref", "dataset.workers=1", *extra, reference_scrub=True)
    serial = ingest(export, tmp_path / "serial", "dataset.workers=1", *extra)
    parallel = ingest(export, tmp_path / "parallel", "dataset.workers=3", *extra)
    assert reference == serial == parallel == BEFORE[sessions]
