"""An example doppelkit plugin: conversations from a JSONL file.

Each line is one conversation::

    {"id": "c1", "channel": "general", "messages": [{"user": "alice", "text": "hi", "ts": 1.0}, …]}

``user`` is whatever stable identifier the export uses; it becomes the user ID (and the name).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from doppelkit import hookimpl
from doppelkit.errors import InputDataError
from doppelkit.hookspecs import Register
from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, Message, Thread, User, Workspace, validate_safe_id


class JsonlSource:
    """Reads conversations, one JSON object per line; bad lines are skipped and reported."""

    name: ClassVar[str] = "jsonl"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        path: Path = Field(description="the JSONL file to read")
        team: str = Field("local", description="team ID to file datasets and adapters under")

    def __init__(self, config: Config, context: RunContext) -> None:
        self.config = config
        self.context = context

    def _lines(self) -> Iterator[tuple[int, str]]:
        path = self.config.path.expanduser()
        if not path.is_file():
            raise InputDataError(f"source.path={str(path)!r} is not a file; point it at a .jsonl file.")
        with path.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    yield number, line

    def _conversations(self, report: DatasetReport | None) -> Iterator[dict]:
        for number, line in self._lines():
            try:
                record = json.loads(line)
                if not isinstance(record.get("messages"), list):
                    raise ValueError("no 'messages' list")
            except (ValueError, AttributeError) as exc:
                if report is not None:
                    report.skip_file(f"{self.config.path}:{number}", f"not a conversation: {exc}")
                continue
            yield record

    def workspace(self) -> Workspace:
        try:
            team = validate_safe_id(self.config.team, "source.team")
        except ValueError as exc:
            raise InputDataError(str(exc)) from None
        authors: dict[str, None] = {}
        for record in self._conversations(None):
            for message in record["messages"]:
                if isinstance(message, dict) and message.get("user"):
                    authors.setdefault(str(message["user"]), None)
        return Workspace(team=team, users=[User(id=a, name=a) for a in authors])

    def threads(self, report: DatasetReport) -> Iterator[Thread]:
        team = self.config.team
        for index, record in enumerate(self._conversations(report)):
            messages = sorted(
                (
                    Message(
                        ts=str(m.get("ts", i)),
                        user=str(m.get("user") or "") or None,
                        text=str(m.get("text", "")),
                    )
                    for i, m in enumerate(record["messages"])
                    if isinstance(m, dict)
                ),
                key=lambda m: m.ts_key,
            )
            if not messages:
                report.drop("empty_conversation")
                continue
            channel = str(record.get("channel") or "jsonl")
            yield Thread(
                team=team,
                channel=channel,
                channel_name=channel,
                ts=str(record.get("id") or messages[0].ts or index),
                messages=messages,
            )


@hookimpl
def register_sources(register: Register) -> None:
    register(JsonlSource)
