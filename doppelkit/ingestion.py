"""Ingest's inner loop: a source's threads → dataset lines, held-out lines and corpus lines.

:func:`doppelkit.pipeline.ingest` opens the output files and writes what this module produces,
in order. Each thread gets the workspace's names (:func:`~doppelkit.threads.label_threads`),
optionally joins a time-gap session, is scrubbed (:class:`~doppelkit.plugins.Scrubber`, many
messages' texts at once), goes to the held-out side or the training side by
:func:`eval_share`, into the workspace corpus if it is training text, and through the formatter.

Two ways to run it, with the same bytes out:

* **in this process** (:func:`serial_pieces`), thread by thread as the source yields them;
* **over worker processes** (:func:`parallel_pieces`), when the source splits into
  independent parts (:class:`~doppelkit.interfaces.PartitionedSource`: a Slack export's
  channels) and the workspace is large enough to be worth it. Each worker reads one part and
  returns its finished lines and report counts; parts are written in their order, so the
  dataset, the held-out file, the corpus and the report's counts are those of a serial run,
  whatever the number of workers. Workers are forked (they inherit the run's components and
  plugins as they are, nothing is rebuilt or pickled); where ``fork`` is not available, ingest
  runs in this process.

Time-gap sessions cross part boundaries the way :func:`~doppelkit.threads.group_sessions`
does in one stream (a session still open at the end of a channel goes on only when the next
lone message arrives), so each part's output comes in three pieces — before its first lone
message, after it, and its last open session — and :func:`parallel_pieces` lays them out as
the serial stream does.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from doppelkit.corpus import corpus_line
from doppelkit.errors import InputDataError
from doppelkit.interfaces import Formatter, Partition, PartitionedSource
from doppelkit.models import DatasetReport, Message, Persona, Thread, updated
from doppelkit.plugins import Scrubber
from doppelkit.threads import SessionGrouper, is_lone_top_level, label_threads, threadless_sessions

# Scrub this many messages' texts in one search (see Scrubber.texts); output is the same for
# any batch size, only the number of calls changes.
BATCH_MESSAGES = 4000
# Below this much to read (bytes), worker processes cost more than they save.
PARALLEL_MIN_BYTES = 32 * 1024**2
# Below this much to read (bytes), ingest is over before a progress bar would help.
PROGRESS_MIN_BYTES = 64 * 1024**2


def eval_share(thread: Thread, fraction: float) -> bool:
    """Deterministic held-out split by thread: the same thread always lands on the same side."""
    if fraction <= 0:
        return False
    key = f"{thread.team}/{thread.channel}/{thread.ts}".encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    return bucket < fraction


@dataclass
class Work:
    """Everything the loop needs besides the threads: built once, inherited by workers."""

    persona: Persona
    formatter: Formatter
    scrubber: Scrubber
    labels: Mapping[str, str]  # user ID → label, from the workspace
    channel_names: Mapping[str, str]  # channel ID → name, from the workspace
    eval_fraction: float
    session_gap_minutes: float | None
    corpus_team: str
    source_name: str = "source"  # to name it when it gives an invalid message
    platform: str = ""  # the source's chat platform, set on threads that do not say
    threadless_gap_minutes: float | None = None  # used when session_gap_minutes is None


@dataclass
class Piece:
    """The finished output of some consecutive threads: write ``train`` to the dataset,
    ``eval`` to the held-out file, ``corpus`` (``corpus_documents`` lines) to the corpus, then
    add ``report`` and ``scrubbed`` to the run's counts (``None``: already counted there)."""

    train: str = ""
    eval: str = ""
    corpus: bytes = b""
    corpus_documents: int = 0
    messages: int = 0  # messages the source gave (for progress)
    size: int = 0  # the size of the parts finished with this piece (for progress)
    report: DatasetReport | None = None
    scrubbed: Counter[str] | None = None


@dataclass
class _Collector:
    """Builds pieces from threads, scrubbing them in batches."""

    work: Work
    report: DatasetReport
    scrubbed: Counter[str]
    batch: list[Thread] = field(default_factory=list)
    batch_messages: int = 0
    train: list[str] = field(default_factory=list)
    eval: list[str] = field(default_factory=list)
    corpus: list[bytes] = field(default_factory=list)
    messages: int = 0
    channels: set[str] = field(default_factory=set)  # the channels counted in report.channels_read

    def add(self, threads: Iterable[Thread]) -> None:
        for thread in threads:
            self.batch.append(thread)
            self.batch_messages += len(thread.messages)
            if self.batch_messages >= BATCH_MESSAGES:
                self._format_batch()

    def piece(self, *, own_counts: bool = False) -> Piece:
        """Everything added so far (formatted), and start afresh. ``own_counts``: the piece
        carries its report and scrub counts (a worker's), which start afresh too."""
        self._format_batch()
        piece = Piece(
            train="".join(self.train),
            eval="".join(self.eval),
            corpus=b"".join(self.corpus),
            corpus_documents=len(self.corpus),
            messages=self.messages,
        )
        self.train, self.eval, self.corpus, self.messages = [], [], [], 0
        if own_counts:
            piece.report, piece.scrubbed = self.report, self.scrubbed
            self.report, self.scrubbed = DatasetReport(), Counter()
        return piece

    def _format_batch(self) -> None:
        if not self.batch:
            return
        work, report, scrubbed = self.work, self.report, self.scrubbed

        def record(kind: str, n: int) -> None:
            scrubbed[kind] += n

        threads = self.batch
        texts = work.scrubber.texts([m.text for t in threads for m in t.messages], record)
        # Who wrote how much (people only): suggestions when the persona has nothing to learn from.
        authors = Counter(m.user for t in threads for m in t.messages if m.user and not m.is_bot)
        for author, n in authors.items():
            report.authors[author] = report.authors.get(author, 0) + n
        for thread in threads:
            if thread.channel not in self.channels:
                self.channels.add(thread.channel)
                report.channels_read += 1
                report.private_channels_read += thread.private
        self.batch, self.batch_messages = [], 0
        start = 0
        persona, formatter, fraction = work.persona, work.formatter, work.eval_fraction
        team = work.corpus_team
        corpus, train, held = self.corpus, self.train, self.eval
        messages_seen = train_examples = eval_examples = 0
        for thread in threads:
            messages = thread.messages
            end = start + len(messages)
            thread = _with_texts(thread, texts[start:end])
            start = end
            messages_seen += len(messages)
            held_out = fraction > 0 and eval_share(thread, fraction)
            if not held_out:  # a shared base model must never have seen a held-out thread
                line = corpus_line(thread, team)
                if line is not None:
                    corpus.append(line)
            examples = [ex.model_dump_json() + "\n" for ex in formatter.examples(thread, persona, report)]
            if held_out:
                held.extend(examples)
                eval_examples += len(examples)
            else:
                train.extend(examples)
                train_examples += len(examples)
        # Counted once per batch: setting a field of the report costs more than a thread's sums.
        report.threads_seen += len(threads)
        report.messages_seen += messages_seen
        report.examples_kept += train_examples + eval_examples
        report.train_examples += train_examples
        report.eval_examples += eval_examples


def _with_texts(thread: Thread, texts: Sequence[str]) -> Thread:
    """``thread`` with its messages' texts replaced by the scrubbed ``texts`` (itself if none changed)."""
    messages = thread.messages
    if all(text is message.text for text, message in zip(texts, messages, strict=True)):
        return thread
    clean: list[Message] = [
        message if text == message.text else updated(message, text=text)
        for text, message in zip(texts, messages, strict=True)
    ]
    return updated(thread, messages=clean)


def _prepared(work: Work, threads: Iterable[Thread], collector: _Collector) -> Iterable[Thread]:
    """The source's threads counted, named, and — channels without threads, unless sessions are
    asked for everywhere (or never) — grouped into sessions."""
    threads = label_threads(
        _counted(checked(threads, work.source_name), collector), work.labels, work.channel_names
    )
    if work.session_gap_minutes or not work.threadless_gap_minutes:
        return threads

    def grouped(_: Thread) -> None:
        collector.report.threadless_channels += 1

    return threadless_sessions(threads, work.threadless_gap_minutes, grouped)


def _counted(threads: Iterable[Thread], collector: _Collector) -> Iterator[Thread]:
    platform = collector.work.platform
    for thread in threads:
        collector.messages += len(thread.messages)
        yield updated(thread, platform=platform) if platform and not thread.platform else thread


def checked(threads: Iterable[Thread], source: str) -> Iterator[Thread]:
    """The source's threads; a message it cannot build (a bad ``ts``, …) is the source's or its
    input's fault: say which source and what, in one line, instead of a traceback."""
    try:
        yield from threads
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "value"
        why = str(error["msg"]).removeprefix("Value error, ")
        raise InputDataError(
            f"source={source} gave an invalid {exc.title}: {where}: {why} (got {error['input']!r})"
        ) from None


def serial_pieces(
    work: Work, threads: Iterable[Thread], report: DatasetReport, scrubbed: Counter[str]
) -> Iterator[Piece]:
    """Every thread of ``threads`` (one stream, in order) turned into pieces, in this process;
    counts go straight into ``report`` and ``scrubbed``."""
    collector = _Collector(work, report, scrubbed)
    stream = _prepared(work, threads, collector)
    grouper = SessionGrouper(work.session_gap_minutes) if work.session_gap_minutes else None
    for thread in stream:
        collector.add(grouper.feed(thread) if grouper else (thread,))
        if collector.messages >= BATCH_MESSAGES:
            yield collector.piece()
    if grouper:
        collector.add(grouper.flush())
    yield collector.piece()


def parts_stream(
    source: PartitionedSource, parts: Sequence[Partition], report: DatasetReport, done: list[int]
) -> Iterator[Thread]:
    """The threads of every part in order, as ``source.threads`` gives them; ``done[0]`` adds
    up the sizes of the parts read to the end (for progress)."""
    for part in parts:
        yield from source.partition_threads(part, report)
        done[0] += part.size


@dataclass
class PartResult:
    """One part's output in the three pieces :func:`parallel_pieces` lays out (see the module
    docstring): ``head`` before its first lone message (all of it without sessions or without
    lone messages), ``rest`` from there on, ``open_session`` the session still open at its end."""

    head: Piece
    rest: Piece | None = None
    open_session: Piece | None = None


def part_result(work: Work, threads: Iterable[Thread], report: DatasetReport) -> PartResult:
    """One part's threads turned into its :class:`PartResult`; ``report`` is where the source
    counts while reading the part (it goes with the piece being built at the time)."""
    collector = _Collector(work, report, Counter())
    stream = _prepared(work, threads, collector)
    gap = work.session_gap_minutes
    if not gap:
        collector.add(stream)
        return PartResult(collector.piece(own_counts=True))
    grouper = SessionGrouper(gap)
    head: Piece | None = None
    for thread in stream:
        if head is None and is_lone_top_level(thread):
            # Read serially, the previous part's open session goes on here.
            collector.messages -= len(thread.messages)  # this message belongs after the head
            head = collector.piece(own_counts=True)
            collector.messages += len(thread.messages)
        collector.add(grouper.feed(thread))
    if head is None:
        return PartResult(collector.piece(own_counts=True))
    rest = collector.piece(own_counts=True)
    collector.add(grouper.flush())
    return PartResult(head, rest, collector.piece(own_counts=True))


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, where the platform tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Workers are forked; only where that is the platform's safe default (Linux)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def worker_count(configured: int | None, parts: Sequence[Partition]) -> int:
    """How many worker processes to read ``parts`` with (1: none, read in this process)."""
    if len(parts) < 2 or not can_fork():
        return 1
    if configured is not None:
        return min(configured, len(parts))
    if sum(p.size for p in parts) < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(available_cores(), len(parts)))


# What a forked worker inherits: set just before the pool forks, cleared after.
_inherited: tuple[Work, PartitionedSource, Sequence[Partition]] | None = None


def _read_part(index: int) -> PartResult:
    """In a worker: read and process part ``index`` (the run's components were inherited)."""
    assert _inherited is not None, "workers are forked by parallel_pieces"
    work, source, parts = _inherited
    report = DatasetReport()
    return part_result(work, source.partition_threads(parts[index], report), report)


def parallel_pieces(
    work: Work, source: PartitionedSource, parts: Sequence[Partition], workers: int
) -> Iterator[Piece]:
    """The pieces of every part, read by ``workers`` forked processes, in part order.

    The workers are forked here, before the caller starts any thread of its own (a progress
    bar's): a fork copies only the thread that calls it. At most ``workers + 1`` parts are in
    flight, so memory stays bounded by the largest parts, not the workspace. Every piece
    carries its own report and scrub counts; a part's first piece carries its ``size``.
    """
    global _inherited
    _inherited = (work, source, parts)
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        pool.submit(int).result()  # fork every worker now
    finally:
        _inherited = None
    return _in_order(pool, parts, workers)


def _in_order(pool: ProcessPoolExecutor, parts: Sequence[Partition], workers: int) -> Iterator[Piece]:
    try:
        pending: deque[Future[PartResult]] = deque()
        upcoming = iter(range(len(parts)))
        for index in upcoming:
            pending.append(pool.submit(_read_part, index))
            if len(pending) > workers:
                break
        open_session: Piece | None = None
        done = 0
        while pending:
            result = pending.popleft().result()
            for index in upcoming:
                pending.append(pool.submit(_read_part, index))
                break
            result.head.size = parts[done].size
            done += 1
            yield result.head
            if result.rest is not None:
                if open_session is not None:
                    yield open_session
                yield result.rest
                open_session = result.open_session
        if open_session is not None:
            yield open_session
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class IngestProgress:
    """A progress bar with messages per second, for large workspaces (rich, on the run's console).

    Shown only on a terminal and when there is at least :data:`PROGRESS_MIN_BYTES` to read:
    small ingests finish before a bar would help, and logs should not fill with redraws.
    """

    def __init__(self, console: Console, total_bytes: int, label: str = "ingest") -> None:
        self.enabled = console.is_terminal and total_bytes >= PROGRESS_MIN_BYTES
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[messages]:,} messages, {task.fields[rate]:,.0f} messages/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not self.enabled,
        )
        self.task = self.progress.add_task(label, total=max(total_bytes, 1), messages=0, rate=0.0)
        self.messages = 0
        self.started = time.perf_counter()

    def __enter__(self) -> IngestProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def advance(self, messages: int, size: int) -> None:
        """``messages`` more read; ``size`` more bytes of the source finished."""
        self.messages += messages
        rate = self.messages / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.task, advance=size, messages=self.messages, rate=rate)


__all__ = [
    "BATCH_MESSAGES",
    "PARALLEL_MIN_BYTES",
    "PROGRESS_MIN_BYTES",
    "IngestProgress",
    "PartResult",
    "Piece",
    "Work",
    "available_cores",
    "can_fork",
    "eval_share",
    "parallel_pieces",
    "part_result",
    "parts_stream",
    "serial_pieces",
    "worker_count",
]
