"""Which text the tiny base learns from: the team's workspace corpus, else the dataset's turns.

``doppelkit ingest`` writes a workspace corpus (every person's train-split conversations, see
:mod:`doppelkit.corpus`) and records it in the dataset report, so every persona of a team
names the same corpus and so the same tiny base. A dataset made elsewhere (no corpus in its
report) falls back to its own turns: the base is then the persona's own, not shared.

A conversation becomes pretraining text in the two shapes the chat formatter shows a model:
the whole thread as ``Name: text`` lines (what user turns hold) and each run of one person's
consecutive messages joined as a reply (what an assistant turn holds). The adapter then starts
from a base that already writes messages the way this team does, whoever is the persona.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from doppelkit.builtins.formatters.turns import join_reply
from doppelkit.corpus import Said, read_corpus
from doppelkit.interfaces import TrainJob
from doppelkit.models import Example
from doppelkit_lora.model.tiny import TinyCorpus, texts_sha256


def tiny_corpus(job: TrainJob, train_examples: list[Example]) -> TinyCorpus:
    """The corpus for this job's tiny base: read only if that base is not built yet."""
    report = job.report
    if report is not None and report.corpus_sha256 and report.corpus_path:
        path, sha256 = Path(report.corpus_path), report.corpus_sha256
        origin = f"workspace corpus {path.name}"
        return TinyCorpus(
            job.persona.team, sha256, origin, lambda: pretraining_texts(read_corpus(path, sha256))
        )
    texts = corpus_texts(train_examples)
    return TinyCorpus(job.persona.team, texts_sha256(texts), "dataset turns", lambda: texts)


def pretraining_texts(conversations: Iterable[list[Said]]) -> list[str]:
    """Each conversation as a transcript, then each of its single-speaker runs as a reply.

    The base's cache key hashes the corpus file, not these texts: a change of layout here must
    bump ``tiny.BUILDER_VERSION``.
    """
    texts = []
    for said in conversations:
        texts.append("\n".join(f"{m.speaker}: {m.text}" for m in said))
        run: list[Said] = []
        for message in [*said, None]:
            if run and (message is None or message.speaker != run[0].speaker):
                texts.append(join_reply([m.text for m in run]))
                run = []
            if message is not None:
                run.append(message)
    return texts


def corpus_texts(*example_sets: Iterable[Example]) -> list[str]:
    """The fallback without a workspace corpus: every distinct non-system turn of the examples
    (the persona's replies and the colleagues quoted as context), first-seen order.

    Context turns repeat across examples of one thread; deduplicating keeps the corpus (and its
    hash) about the workspace, not about how many replies the persona wrote.
    """
    seen: dict[str, None] = {}
    for examples in example_sets:
        for example in examples:
            for message in example.messages:
                text = message.content.strip()
                if message.role != "system" and text:
                    seen.setdefault(text, None)
    return list(seen)
