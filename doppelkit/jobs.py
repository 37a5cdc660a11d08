"""The jobs behind the CLI verbs: choose the persona, hand each step to the selected backend,
print what came back.

The work itself is in :mod:`doppelkit.pipeline`; :mod:`doppelkit.steps` turns it into
functions of plain data that any backend can run (in this process, a fresh one, elsewhere).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from doppelkit import steps
from doppelkit.config import RunConfig
from doppelkit.interfaces import Backend, RunContext, TrainResult
from doppelkit.models import DatasetReport, Persona
from doppelkit.pipeline import DatasetPaths, IngestResult, find_dataset, make, report_user

__all__ = ["ingest", "print_dataset_report", "print_train_result", "run_pipeline", "serve", "train"]


def backend_for(run: RunConfig, context: RunContext) -> Backend:
    """The selected backend (``+backend=…``; none means ``local``)."""
    backend: Backend = make(run["backend"], context)
    return backend


def ingest(run: RunConfig, context: RunContext, backend: Backend | None = None) -> IngestResult:
    """``doppelkit ingest``: the ingest step on the selected backend."""
    backend = backend or backend_for(run, context)
    with steps.in_process(context):
        done = backend.run(steps.ingest, run.to_data())
    report = DatasetReport.model_validate(done["report"])
    persona = Persona(team=report.team, user=report_user(report))
    return IngestResult(persona, DatasetPaths.beside(Path(report.dataset_path)), report)


def train(
    run: RunConfig, context: RunContext, persona: Persona | None = None, backend: Backend | None = None
) -> TrainResult:
    """``doppelkit train``: the train step for the chosen persona, on the selected backend.

    The backend is built first: one that cannot run (no GPU, no credentials) says so before
    anything else is looked at."""
    backend = backend or backend_for(run, context)
    if persona is None:
        persona, _paths, _report = find_dataset(run, context.home)
    with steps.in_process(context):
        done = backend.run(steps.train, run.to_data(), persona.team, persona.id, device=backend.device)
    return TrainResult(
        adapter_dir=context.home.root / done["adapter_dir"],
        version=done["version"],
        metrics=done["metrics"],
        location=done.get("location"),
    )


SKIPPED_SHOWN = 10  # skipped files listed on the console; the report lists them all


def print_dataset_report(report: DatasetReport, console: Console) -> None:
    table = Table(title=f"Dataset for {report.persona_name} ({report.persona_id})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("threads seen", str(report.threads_seen))
    table.add_row("messages seen", str(report.messages_seen))
    table.add_row("candidate persona messages", str(report.candidate_persona_messages))
    table.add_row(
        "examples kept",
        f"{report.examples_kept} ({report.train_examples} train, {report.eval_examples} held out)",
    )
    if report.threadless_channels:
        table.add_row("channels without threads, read as sessions", str(report.threadless_channels))
    for reason, n in sorted(report.drops.items()):
        table.add_row(f"dropped: {reason}", str(n))
    for kind, n in sorted(report.generated_text.items()):
        table.add_row(f"left out, not the person's words: {kind}", str(n))
    for kind, n in sorted(report.scrubbed.items()):
        table.add_row(f"scrubbed: {kind}", str(n))
    for skipped in report.skipped_files[:SKIPPED_SHOWN]:
        table.add_row("skipped file", f"{skipped.path}: {skipped.reason}")
    if len(report.skipped_files) > SKIPPED_SHOWN:
        more = len(report.skipped_files) - SKIPPED_SHOWN
        table.add_row("skipped files", f"… and {more} more, listed in the dataset report")
    console.print(table)
    console.print(f"dataset: {report.dataset_path}")


def print_train_result(result: TrainResult, console: Console) -> None:
    """Where the adapter is; the trainer prints its own (persona) report while it runs."""
    where = result.location or str(result.adapter_dir)
    console.print(f"[bold green]published[/] {result.version}: {where}")
    console.print(f"metrics and provenance: {where.rstrip('/')}/manifest.json")


def run_pipeline(run: RunConfig, context: RunContext) -> TrainResult:
    """The bare ``doppelkit`` job: ingest → train → evaluate → publish, each step on the backend."""
    backend = backend_for(run, context)
    ingested = ingest(run, context, backend)
    print_dataset_report(ingested.report, context.console)
    result = train(run, context, ingested.persona, backend)
    print_train_result(result, context.console)
    return result


def serve(run: RunConfig, context: RunContext) -> None:
    """``doppelkit serve`` / ``chat``: the serve step on the selected backend (blocks)."""
    backend = backend_for(run, context)
    with steps.in_process(context):
        backend.run(steps.serve, run.to_data(), device=backend.device)
