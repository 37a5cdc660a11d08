"""An example doppelkit plugin: conversations from a JSONL file.

Each line is one conversation::

    {"id": "c1", "channel": "general", "messages": [{"user": "alice", "text": "hi", "ts": 1.0}, …]}

``user`` is whatever stable identifier the export uses (a name, or an all-digit ID as Discord's);
it becomes the user ID (and the name, unless ``name`` is given). ``ts`` is seconds since the
epoch (a number or a numeric string), converted to the ``"1700000000.000100"`` form doppelkit
uses. ``source.platform`` names the chat platform in system prompts.

The plugin also ships YAML presets (``configs/source/*.yaml``), found through the
``doppelkit.configs`` entry point: ``source=jsonl_discord`` is this source set up for
conversations exported from Discord.
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
from doppelkit.models import ID, DatasetReport, Message, Thread, User, Workspace, validate_safe_id


class JsonlSource:
    """Reads conversations, one JSON object per line; bad lines are skipped and reported."""

    name: ClassVar[str] = "jsonl"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        path: Path = Field(description="the JSONL file to read")
        team: ID = Field("local", description="team ID to file datasets and adapters under")
        platform: str = Field("team chat", description="the chat platform, named in system prompts")

    def __init__(self, config: Config, context: RunContext) -> None:
        self.config = config
        self.context = context
        self.platform = config.platform  # what the system prompt calls the conversations' home

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
        authors: dict[str, str] = {}
        for record in self._conversations(None):
            for message in record["messages"]:
                if isinstance(message, dict) and message.get("user"):
                    author = str(message["user"])
                    authors.setdefault(author, str(message.get("name") or author))
        return Workspace(team=team, users=[User(id=a, name=name) for a, name in authors.items()])

    def threads(self, report: DatasetReport) -> Iterator[Thread]:
        team = self.config.team
        for record in self._conversations(report):
            messages = sorted(
                (
                    Message(
                        ts=timestamp(m.get("ts", i)),
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
                ts=messages[0].ts,  # a thread is known by its first message's timestamp
                messages=messages,
            )


def timestamp(value: object) -> str:
    """Seconds since the epoch as doppelkit writes them ("1700000000.000100"); anything else is
    passed on as is, and doppelkit says which source gave it and what was wrong."""
    try:
        return f"{float(str(value)):.6f}"
    except ValueError:
        return str(value)


@hookimpl
def register_sources(register: Register) -> None:
    register(JsonlSource)
