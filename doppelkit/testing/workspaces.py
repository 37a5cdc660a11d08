"""An in-memory workspace for ingest tests: a source serving fixed threads, and its run config.

``ingest_config(home, workspace, threads, persona="maya")`` is what ``doppelkit ingest`` would
run with ``source=<that workspace>`` and the chat formatter, so a test can ingest several
personas of one workspace without writing an export.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from doppelkit.config import RunConfig, Selection
from doppelkit.errors import InputDataError
from doppelkit.interfaces import Partition, RunContext
from doppelkit.models import DatasetReport, Thread, Workspace
from doppelkit.settings import ScrubConfig


def static_source(workspace: Workspace, threads: Sequence[Thread], platform: str = "") -> type[Any]:
    """A Source class whose instances yield ``threads`` of ``workspace``, in order, and say they
    read ``platform`` (named in system prompts; "" = unknown)."""

    class StaticSource:
        name: ClassVar[str] = "static"

        class Config(BaseModel):
            model_config = ConfigDict(extra="forbid")

        def __init__(self, config: Any, context: RunContext) -> None:
            self.platform = platform

        def workspace(self) -> Workspace:
            return workspace

        def threads(self, report: DatasetReport) -> Iterator[Thread]:
            yield from threads

    return StaticSource


def partitioned_source(workspace: Workspace, threads: Sequence[Thread], platform: str = "") -> type[Any]:
    """Like :func:`static_source`, but a :class:`~doppelkit.interfaces.PartitionedSource`: one
    part per channel (in order of first appearance), so ``ingest`` may read it with worker
    processes. A thread whose text contains ``FAIL-IN-PART`` makes reading its part raise."""
    channels = list(dict.fromkeys(t.channel for t in threads))

    class PartitionedStaticSource:
        name: ClassVar[str] = "static_parts"

        class Config(BaseModel):
            model_config = ConfigDict(extra="forbid")

        def __init__(self, config: Any, context: RunContext) -> None:
            self.platform = platform

        def workspace(self) -> Workspace:
            return workspace

        def threads(self, report: DatasetReport) -> Iterator[Thread]:
            for part in self.partitions(report):
                yield from self.partition_threads(part, report)

        def partitions(self, report: DatasetReport) -> list[Partition]:
            return [
                Partition(channel, sum(len(t.messages) for t in threads if t.channel == channel), channel)
                for channel in channels
            ]

        def partition_threads(self, partition: Partition, report: DatasetReport) -> Iterator[Thread]:
            report.drop(f"read:{partition.key}")
            for thread in threads:
                if thread.channel == partition.key:
                    if any("FAIL-IN-PART" in m.text for m in thread.messages):
                        raise InputDataError(f"part {partition.key} is damaged")
                    yield thread

    return PartitionedStaticSource


def ingest_config(
    home: Path,
    workspace: Workspace,
    threads: Sequence[Thread],
    persona: str,
    scrub: ScrubConfig | None = None,
    platform: str = "",
    *,
    partitioned: bool = False,
    **formatter_options: Any,
) -> RunConfig:
    """The run config of ``doppelkit ingest persona.user=<persona>`` over these threads.

    ``partitioned``: the source splits by channel (:func:`partitioned_source`).
    ``eval_fraction``, ``session_gap_minutes`` and ``workers`` go to ``dataset.*``; other
    options to the chat formatter."""
    from doppelkit.builtins.formatters import ChatFormatter
    from doppelkit.settings import Settings

    source = (partitioned_source if partitioned else static_source)(workspace, threads, platform)
    dataset = {
        k: formatter_options.pop(k)
        for k in ("eval_fraction", "session_gap_minutes", "workers")
        if k in formatter_options
    }
    settings = Settings.model_validate(
        {"home": home, "persona": {"user": persona}, "scrub": scrub or ScrubConfig(), "dataset": dataset}
    )
    formatter = ChatFormatter.Config(**formatter_options)
    return RunConfig(
        settings=settings,
        selections={
            "source": Selection("source", source.name, source, source.Config(), "test"),
            "formatter": Selection("formatter", "chat", ChatFormatter, formatter, "test"),
        },
    )
