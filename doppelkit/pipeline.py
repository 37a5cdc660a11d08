"""The work behind each step: ingest a workspace, train a persona, serve.

Each builds its components from a validated :class:`~doppelkit.config.RunConfig` and runs
wherever a backend runs the step: :mod:`doppelkit.steps` wraps each as a function of plain
data, and :mod:`doppelkit.jobs` (the CLI verbs) hands those to the selected backend. None of
them knows which plugins it is talking to.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from doppelkit.config import RunConfig, Selection
from doppelkit.corpus import CorpusWriter
from doppelkit.errors import InputDataError, PersonaError
from doppelkit.home import Home, atomic_write, write_json
from doppelkit.ingestion import (
    IngestProgress,
    Piece,
    Work,
    parallel_pieces,
    parts_stream,
    serial_pieces,
    worker_count,
)
from doppelkit.ingestion import eval_share as eval_share  # the held-out split, also imported from here
from doppelkit.interfaces import (
    Engine,
    Formatter,
    Frontend,
    PartitionedSource,
    RunContext,
    Source,
    Trainer,
    TrainJob,
    TrainResult,
)
from doppelkit.models import DatasetReport, Message, Persona, Thread, User
from doppelkit.persona import resolve_persona, select_persona
from doppelkit.plugins import Scrubber
from doppelkit.registry import Registries
from doppelkit.settings import ScrubConfig

REPORT_SUFFIX = ".report.json"
EVAL_SUFFIX = ".eval.jsonl"


def build_context(
    run: RunConfig, hook: Any, console: Console | None = None, registries: Registries | None = None
) -> RunContext:
    return RunContext(
        settings=run.settings,
        console=console or Console(stderr=True),
        hook=hook,
        registries=registries,
        run=run,
    )


def make(selection: Selection, context: RunContext) -> Any:
    """Instantiate a selected component with its validated config."""
    return selection.component(selection.config, context)


@dataclass(frozen=True)
class DatasetPaths:
    train: Path
    eval: Path
    report: Path

    @classmethod
    def beside(cls, train: Path) -> DatasetPaths:
        stem = train.name.removesuffix(".jsonl")
        return cls(train, train.with_name(stem + EVAL_SUFFIX), train.with_name(stem + REPORT_SUFFIX))


def dataset_paths(run: RunConfig, home: Home, persona: Persona) -> DatasetPaths:
    configured = run.settings.dataset.path
    train = Path(configured) if configured else home.datasets(persona.team, persona.id) / "dataset.jsonl"
    train = train.expanduser().resolve()
    if train.is_dir():
        raise InputDataError(f"dataset.path={str(train)!r} is a directory; give a .jsonl file path.")
    return DatasetPaths.beside(train)


def scrub_thread(
    thread: Thread,
    hook: Any,
    counts: Counter[str],
    config: ScrubConfig | None = None,
    scrubber: Scrubber | None = None,
) -> Thread:
    """Run the ``scrub_message`` chain over every message, before anything reaches disk.

    ``scrubber``: the chain set up once (ingest scrubs every thread with one); otherwise it is
    set up from ``hook`` and ``config``. A thread with nothing to redact is returned as is.
    """

    def record(kind: str, n: int) -> None:
        counts[kind] += n

    scrubber = scrubber or Scrubber(hook, config)
    messages = thread.messages
    texts = scrubber.texts([message.text for message in messages], record)
    if all(text is message.text for text, message in zip(texts, messages, strict=True)):
        return thread
    clean: list[Message] = [
        message if text == message.text else message.model_copy(update={"text": text})
        for text, message in zip(texts, messages, strict=True)
    ]
    return thread.model_copy(update={"messages": clean})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class IngestResult:
    persona: Persona
    paths: DatasetPaths
    report: DatasetReport


@contextlib.contextmanager
def no_new_empty_dirs(directories: list[Path]) -> Iterator[None]:
    """On an exception, remove those of ``directories`` (and their parents) that did not exist
    before and are empty now; on success, leave everything."""
    created: list[Path] = []
    for directory in directories:
        for path in (directory, *directory.parents):
            if path.exists():
                break
            created.append(path)
    try:
        yield
    except BaseException:
        for path in sorted(set(created), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty (or gone): leave it
                path.rmdir()
        raise


def ingest(run: RunConfig, context: RunContext) -> IngestResult:
    """Source → scrub → formatter → dataset JSONL (+ held-out JSONL + report), all atomic.

    The same pass writes the team's workspace corpus (train-split threads, every person; see
    :mod:`doppelkit.corpus`), which the tiny base model learns from. The work itself is in
    :mod:`doppelkit.ingestion`: in this process, or over worker processes for a large source
    that splits into parts (the output is the same bytes either way).
    """
    source: Source = make(run["source"], context)
    formatter: Formatter = make(run["formatter"], context)
    workspace = source.workspace()
    persona = resolve_persona(run.settings.persona, workspace)
    paths = dataset_paths(run, context.home, persona)
    dataset = run.settings.dataset
    eval_fraction = dataset.eval_fraction
    report = DatasetReport(
        source=run["source"].name,
        formatter=run["formatter"].name,
        team=persona.team,
        persona_id=persona.id,
        persona_name=persona.label,
        persona_user=persona.user,
        dataset_path=str(paths.train),
        eval_path=str(paths.eval) if eval_fraction > 0 else "",
    )
    scrubbed: Counter[str] = Counter()
    report.platform = source_platform(source)
    work = Work(
        persona=persona,
        formatter=formatter,
        scrubber=Scrubber(context.hook, run.settings.scrub),
        labels={user.id: user.label for user in workspace.users},
        channel_names=workspace.channels,
        eval_fraction=eval_fraction,
        session_gap_minutes=dataset.session_gap_minutes,
        threadless_gap_minutes=dataset.threadless_gap_minutes,
        corpus_team=persona.team,
        source_name=run["source"].name,
        platform=report.platform,
    )
    partitioned = source if isinstance(source, PartitionedSource) else None
    parts = partitioned.partitions(report) if partitioned is not None else None
    with contextlib.ExitStack() as stack:
        # Entered first, so it runs last: a failed ingest leaves no folder behind (an empty
        # dataset folder would look like a persona to whoever lists them).
        stack.enter_context(no_new_empty_dirs([paths.train.parent, context.home.corpus(persona.team)]))
        train_out = stack.enter_context(atomic_write(paths.train))
        eval_out = stack.enter_context(atomic_write(paths.eval)) if eval_fraction > 0 else None
        corpus = stack.enter_context(CorpusWriter(context.home, persona.team))
        done = [0]  # bytes of the source read to the end, for progress
        pieces: Iterator[Piece]
        if partitioned is None or parts is None:
            pieces = serial_pieces(work, source.threads(report), report, scrubbed)
        elif (workers := worker_count(dataset.workers, parts)) > 1:
            pieces = parallel_pieces(work, partitioned, parts, workers)  # forks before the bar starts
        else:
            pieces = serial_pieces(work, parts_stream(partitioned, parts, report, done), report, scrubbed)
        total = sum(p.size for p in parts) if parts else 0
        progress = stack.enter_context(IngestProgress(context.console, total))
        for piece in pieces:
            train_out.write(piece.train)
            if eval_out is not None:
                eval_out.write(piece.eval)
            corpus.add_lines(piece.corpus, piece.corpus_documents)
            if piece.report is not None:
                report.merge(piece.report)
            if piece.scrubbed is not None:
                scrubbed.update(piece.scrubbed)
            progress.advance(piece.messages, piece.size + done[0])
            done[0] = 0
        report.persona_messages = report.authors.get(persona.id, 0)
        if report.examples_kept == 0:
            # Raising inside the block removes the temp files: nothing half-written stays.
            min_length = getattr(run["formatter"].config, "min_length", None)
            raise PersonaError(no_examples_message(persona, report, dict(work.labels), min_length))
    if eval_fraction <= 0:
        # A held-out file from an earlier ingest now overlaps the training set: never evaluate on it.
        paths.eval.unlink(missing_ok=True)
    report.count_scrubbed(scrubbed)
    # Sorted, so the report reads the same however many processes counted (and in what order).
    report.drops, report.scrubbed = dict(sorted(report.drops.items())), dict(sorted(report.scrubbed.items()))
    report.dataset_sha256 = sha256_file(paths.train)
    if corpus.written is not None:
        report.corpus_path, report.corpus_sha256 = str(corpus.written.path), corpus.written.sha256
    write_json(paths.report, report.model_dump(mode="json"))
    return IngestResult(persona, paths, report)


def source_platform(source: Source) -> str:
    """The chat platform a source reads ("Slack"), from its optional ``platform`` attribute."""
    platform = getattr(source, "platform", "")
    return platform.strip() if isinstance(platform, str) else ""


# How the persona's own unused messages are named in the "no usable messages" error.
_PERSONA_DROP_NAMES = {"too_short": "too short", "empty": "no words", "system_event": "events, not words"}


def no_examples_message(
    persona: Persona, report: DatasetReport, labels: dict[str, str], min_length: int | None = None
) -> str:
    """Why the persona has no examples, and what to do about it — about the persona's own
    messages (not the workspace's drops): nothing written where the source looked (then who
    did write), or written but all too short (then ``formatter.min_length``), or without words."""
    who = f"{persona.label} ({persona.id}) has no usable messages"
    private = report.private_channels_read
    where = (
        f"the {report.channels_read} channels read ({private} private)"
        if private
        else f"the {report.channels_read} public channels read"
    )
    if report.persona_messages == 0:
        writers = sorted(
            ((n, uid) for uid, n in report.authors.items() if uid != persona.id), key=lambda w: (-w[0], w[1])
        )[:5]
        named = ", ".join(f"{labels.get(uid, uid)} ({uid}, {n:,} messages)" for n, uid in writers)
        hint = (
            f"People who wrote the most there: {named}; choose one with persona.user=ID."
            if writers
            else "Nobody wrote anything there; check source.path."
        )
        opt_in = "" if private else " (read only with source.include_private=true, with the members' consent)"
        return (
            f"{who}: they wrote no message in {where} ({report.messages_seen:,} messages). Their words may "
            f"be in private channels{opt_in} or direct messages (never read). {hint}"
        )
    named_drops = sorted(report.persona_drops.items())
    reasons = ", ".join(f"{_PERSONA_DROP_NAMES.get(reason, reason)}: {n:,}" for reason, n in named_drops)
    unused = f" ({reasons})" if reasons else ""
    advice = "Choose another persona."
    if report.persona_drops.get("too_short") and min_length:
        advice = (
            f"Replies shorter than formatter.min_length={min_length} characters are left out: lower it "
            f"(e.g. formatter.min_length={max(1, min_length // 4)}) or choose another persona."
        )
    return f"{who}: they wrote {report.persona_messages:,} messages in {where}, none usable{unused}. {advice}"


def _load_report(path: Path) -> DatasetReport:
    try:
        return DatasetReport.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"cannot read the dataset report {path}: {exc}") from None


def report_user(report: DatasetReport) -> User:
    """The persona's user record (older reports carry only the ID and display label)."""
    return report.persona_user or User(id=report.persona_id, display_name=report.persona_name)


def find_dataset(run: RunConfig, home: Home) -> tuple[Persona, DatasetPaths, DatasetReport]:
    """Locate the dataset for ``train``: ``dataset.path`` or the persona's under home."""
    if run.settings.dataset.path:
        paths = DatasetPaths.beside(Path(run.settings.dataset.path).expanduser().resolve())
        if not paths.train.is_file():
            raise InputDataError(f"dataset.path={str(paths.train)!r} does not exist; run `doppelkit ingest`.")
        if not paths.report.is_file():
            raise InputDataError(
                f"{paths.report} is missing; it is written by `doppelkit ingest` beside the dataset."
            )
        report = _load_report(paths.report)
    else:
        query = run.settings.persona.user
        if not query:
            raise PersonaError("No persona chosen: set persona.user (or dataset.path) to pick a dataset.")
        wanted = dict(home.dataset_reports(run.settings.persona.team))
        if not wanted:
            raise InputDataError(
                f"No dataset under {home.root / 'datasets'} yet; run `doppelkit ingest "
                f"persona.user={query}` first (or pass dataset.path=…)."
            )
        team, user = select_persona(
            query, [(r.team, report_user(r)) for r in wanted.values()], "with a dataset under home"
        )
        report_path, report = next(
            (p, r) for p, r in wanted.items() if (r.team, r.persona_id) == (team, user.id)
        )
        paths = DatasetPaths.beside(report_path.with_name("dataset.jsonl"))
    persona = Persona(team=report.team, user=report_user(report))
    return persona, paths, report


def held_out_dataset(paths: DatasetPaths, report: DatasetReport) -> Path | None:
    """The held-out split written by the same ingest as the dataset, if it has examples."""
    if not report.eval_path or not report.eval_examples or not paths.eval.is_file():
        return None
    return paths.eval


def train_persona(run: RunConfig, context: RunContext, team: str, user: str) -> TrainResult:
    """The train step's work: fine-tune and publish an adapter for this persona's dataset."""
    persona, paths, report = find_dataset(run.with_persona(team, user), context.home)
    trainer: Trainer = make(run["trainer"], context)
    formatter: Formatter = make(run["formatter"], context)
    job = TrainJob(
        persona=persona,
        dataset=paths.train,
        eval_dataset=held_out_dataset(paths, report),
        formatter=formatter,
        model=run.settings.model,
        report=report,
    )
    return trainer.train(job)


def build_engine(run: RunConfig, context: RunContext) -> Engine:
    """The configured engine (``engine=…``), as the serve step builds it; close it when done."""
    engine: Engine = make(run["engine"], context)
    return engine


def serve_engine(run: RunConfig, context: RunContext) -> None:
    """The serve step's work: build the engine and the frontend, serve until it returns."""
    engine = build_engine(run, context)
    try:
        frontend: Frontend = make(run["frontend"], context)
        frontend.serve(engine)
    finally:
        engine.close()
