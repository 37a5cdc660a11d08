"""The rich progress bar shared by pretraining and fine-tuning (step, loss, eval loss, speed)."""

from __future__ import annotations

from typing import Any


def progress_bar(console: Any, title: str) -> Any:
    """A progress bar on ``console``; tasks carry ``loss`` (and optionally ``eval``, ``tps``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(f"[bold]{title}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[extra]}"),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
    )
