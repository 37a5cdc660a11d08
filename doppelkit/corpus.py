"""The workspace corpus: a team's own conversation text, for models that learn from a workspace.

``ingest`` writes it in the same pass that writes a persona's examples, one JSON line per
conversation: ``{"messages": [{"speaker": "Ann", "text": "…"}, …]}`` — every person of the
thread, in order, mrkdwn cleaned (how a consumer lays the text out is its own business). It
holds only what may shape a base model *shared* by every persona of the team:

* train-split threads only: a held-out thread (``pipeline.eval_share``, split by thread and
  independent of the persona) never enters it, so held-out loss stays honest for every persona;
* public conversations only (no private channels: a shared base must not repeat them to people
  outside the channel), people only (no bots, no join/leave/topic events);
* text after the ``scrub_message`` chain, exactly as the datasets get it.

Nothing in it depends on which persona was ingested, so every persona ingested from the same
export (with the same scrub and split settings) produces a byte-identical corpus. Files are
content-addressed — ``home/cache/corpus/<team>/<sha256 prefix>.jsonl`` — so concurrent ingests
never overwrite a corpus another run is about to read; the dataset report records the path and
full hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, NamedTuple

from doppelkit.errors import InputDataError
from doppelkit.home import Home, fsync_dir
from doppelkit.models import Thread
from doppelkit.mrkdwn import clean

CORPUS_SUFFIX = ".jsonl"
# The string encoder ``json.dumps(..., ensure_ascii=False)`` uses (the C one when available).
_encode_string = json.encoder.encode_basestring


class Said(NamedTuple):
    """One message of a corpus conversation: who (the label people see) and what."""

    speaker: str
    text: str


def conversation(thread: Thread) -> list[Said]:
    """What people wrote in the thread, as they read it in the client (no bots, no events)."""
    # Imported here: the formatters package imports the pipeline, which imports this module.
    from doppelkit.builtins.formatters.turns import CONVERSATIONAL_SUBTYPES, thread_channels

    channels = thread_channels(thread)
    labels = thread.user_labels
    said = []
    for message in thread.messages:
        if message.is_bot or message.subtype not in CONVERSATIONAL_SUBTYPES or not message.user:
            continue
        text = clean(message.text, labels, channels).strip()
        if text:
            said.append(Said(labels.get(message.user, message.user), text))
    return said


def corpus_line(thread: Thread, team: str) -> bytes | None:
    """The thread as one corpus line (UTF-8, ending in a newline), or None when it has no place
    in ``team``'s corpus: private, another team's, or nobody's words.

    Exactly ``json.dumps({"messages": [{"speaker": …, "text": …}, …]}, ensure_ascii=False)``
    (a test compares them), written out with the standard library's own string encoder: ingest
    writes one per thread, and the generic encoder cost more than finding the words.
    """
    if thread.private or thread.team != team:
        return None
    said = conversation(thread)
    if not said:
        return None
    encode = _encode_string
    turns = ", ".join(f'{{"speaker": {encode(who)}, "text": {encode(text)}}}' for who, text in said)
    return f'{{"messages": [{turns}]}}\n'.encode()


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    sha256: str
    documents: int


class CorpusWriter:
    """Streams conversations into a new corpus file; published by content hash on success.

    Used as a context manager: on an exception the partial file is removed; on success the file
    is fsynced and renamed to its hash (``written``), or dropped when no conversation had text
    (``written`` stays ``None``).
    """

    def __init__(self, home: Home, team: str) -> None:
        self.team = team
        self.directory = home.corpus(team)
        self.written: CorpusFile | None = None
        self._digest = hashlib.sha256()
        self._documents = 0
        self._tmp: Path | None = None
        self._out: IO[bytes] | None = None

    def __enter__(self) -> CorpusWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".corpus.", suffix=".tmp", dir=self.directory)
        self._tmp, self._out = Path(tmp), os.fdopen(fd, "wb")
        return self

    def add(self, thread: Thread) -> None:
        """Append one (scrubbed, train-split) conversation; private ones and other teams' are skipped."""
        line = corpus_line(thread, self.team)
        if line is not None:
            self.add_lines(line, 1)

    def add_lines(self, lines: bytes, documents: int) -> None:
        """Append ``documents`` lines made by :func:`corpus_line` (for this team), in order."""
        assert self._out is not None, "use CorpusWriter as a context manager"
        if documents:
            self._digest.update(lines)
            self._out.write(lines)
            self._documents += documents

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._out is not None and self._tmp is not None
        try:
            if exc_type is None and self._documents:
                self._out.flush()
                os.fsync(self._out.fileno())
            self._out.close()
            if exc_type is None and self._documents:
                sha256 = self._digest.hexdigest()
                final = self.directory / f"{sha256[:20]}{CORPUS_SUFFIX}"
                os.replace(self._tmp, final)  # same content under the same name: harmless
                fsync_dir(self.directory)
                self.written = CorpusFile(final, sha256, self._documents)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()


def read_corpus(path: Path, sha256: str) -> list[list[Said]]:
    """The conversations of a corpus file, checked against the hash its dataset report recorded."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputDataError(
            f"the workspace corpus {path} written by `doppelkit ingest` cannot be read ({exc}); "
            "run `doppelkit ingest` again."
        ) from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InputDataError(
            f"the workspace corpus {path} is not the one the dataset report recorded; "
            "run `doppelkit ingest` again."
        )
    return [
        [Said(**m) for m in json.loads(line)["messages"]]
        for line in data.decode("utf-8").splitlines()
        if line.strip()
    ]
