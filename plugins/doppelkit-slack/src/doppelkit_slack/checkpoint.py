"""Resumable progress of a Web API scrape, under ``home/state/scrape/<team>/``.

Layout::

    state/scrape/<team>/
      plan.json            what this scrape reads (channels, time bounds, options), written
                           atomically when the scrape starts; a later run resumes it only if
                           its options are the same
      lock                 held (flock) while a scrape runs: two scrapes of one team cannot mix
      channels/<C…>.jsonl  one journal per channel: history pages and finished threads

A journal is append-only. Each record is one JSON line written with a single ``write`` and
flushed to the OS, so a killed process loses at most the record being written; on load, a
torn or corrupt tail is cut off (its page or thread is simply fetched again). Records:

* ``{"history": [messages…], "more": bool}`` — one ``conversations.history`` page;
* ``{"thread": ts, "messages": [messages…]}`` — every reply page of one thread, written once
  the thread is complete, so a finished thread is never fetched again.

Retention: raw messages stay here only while a scrape is unfinished. When the source's thread
stream has been read to the end (the ingest consumed every thread), the whole team directory
is deleted. A scrape that is interrupted (killed, network down, Ctrl-C) keeps its journals so
the next run can give ``ingest`` the complete thread stream without refetching what it has.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doppelkit.errors import UserError
from doppelkit.home import write_json

PLAN_VERSION = 1


@dataclass
class ChannelProgress:
    """What a channel's journal holds: history so far and finished threads."""

    history: dict[str, dict[str, Any]] = field(default_factory=dict)  # ts → top-level message
    history_done: bool = False
    threads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # root ts → messages

    @property
    def oldest_ts(self) -> str | None:
        """Where history paging stopped (it runs newest first)."""
        return min(self.history, key=float) if self.history else None


class ChannelJournal:
    """The append-only journal of one channel. Appends are thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> ChannelProgress:
        progress = ChannelProgress()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return progress
        good = 0  # byte offset after the last intact record
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # torn write: the record never finished
            try:
                record = json.loads(line)
            except ValueError:
                break
            if not isinstance(record, dict):
                break
            self._apply(progress, record)
            good += len(line)
        if good < len(data):
            with self.path.open("r+b") as fh:  # later appends must not land after garbage
                fh.truncate(good)
        return progress

    @staticmethod
    def _apply(progress: ChannelProgress, record: dict[str, Any]) -> None:
        if "history" in record:
            for message in record["history"]:
                progress.history[message["ts"]] = message
            progress.history_done = not record.get("more")
        elif "thread" in record:
            progress.threads[record["thread"]] = record["messages"]

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)  # one write: a kill leaves the record whole or torn, never mixed
            finally:
                os.close(fd)

    def add_history_page(self, messages: list[dict[str, Any]], more: bool) -> None:
        self._append({"history": messages, "more": more})

    def add_thread(self, root_ts: str, messages: list[dict[str, Any]]) -> None:
        self._append({"thread": root_ts, "messages": messages})


class ScrapeCheckpoint:
    """The checkpoint directory of one team's scrape."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_fd: int | None = None

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    def journal(self, channel_id: str) -> ChannelJournal:
        return ChannelJournal(self.root / "channels" / f"{channel_id}.jsonl")

    def load_plan(self) -> dict[str, Any] | None:
        try:
            plan = json.loads(self.plan_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return plan if isinstance(plan, dict) and plan.get("version") == PLAN_VERSION else None

    def save_plan(self, plan: dict[str, Any]) -> None:
        write_json(self.plan_path, {"version": PLAN_VERSION, **plan})

    def clear(self) -> None:
        """Delete every journal and the plan (keeps the lock, if held)."""
        shutil.rmtree(self.root / "channels", ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.plan_path.unlink()

    def finish(self) -> None:
        """The scrape is complete and consumed: delete its raw messages and the directory."""
        self.release()
        shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[ScrapeCheckpoint]:
        """Hold the team's scrape lock for the block (released on exit, even on errors)."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def acquire(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
            self._lock_fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UserError(
                f"Another scrape of this workspace is running (lock: {self.root / 'lock'}). "
                "Wait for it to finish, or stop it first."
            ) from None
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None
