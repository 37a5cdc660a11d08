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

Either record may carry ``"scrubbed": {message ts: {kind: n}}``. A journal built with a
``redact`` function (:data:`MessageRedactor`) passes every message through it before the record
is written, so text it removes never reaches disk; what it removed is counted per message, keyed
by ``ts`` (a thread's root is in a history page and in its thread record: keyed, it is counted
once), so whoever reads the journal back can report it. Journal files are created mode 0600.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doppelkit.errors import UserError
from doppelkit.home import write_json

PLAN_VERSION = 1

MessageRedactor = Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, int]]]
"""Takes one raw message; returns it with sensitive text redacted (a new dict: the argument is
not changed) and how many items of each kind were removed (``{}`` when none)."""


@dataclass
class ChannelProgress:
    """What a channel's journal holds: history so far and finished threads."""

    history: dict[str, dict[str, Any]] = field(default_factory=dict)  # ts → top-level message
    history_done: bool = False
    threads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # root ts → messages
    scrubbed: dict[str, dict[str, int]] = field(default_factory=dict)  # message ts → kind → count

    def apply(self, record: dict[str, Any]) -> None:
        """Add one journal record (as written, or read back)."""
        if "history" in record:
            for message in record["history"]:
                self.history[message["ts"]] = message
            self.history_done = not record.get("more")
        elif "thread" in record:
            self.threads[record["thread"]] = record["messages"]
        scrubbed = record.get("scrubbed")
        if isinstance(scrubbed, dict):
            self.scrubbed.update(scrubbed)

    @property
    def oldest_ts(self) -> str | None:
        """Where history paging stopped (it runs newest first)."""
        return min(self.history, key=float) if self.history else None


class ChannelJournal:
    """The append-only journal of one channel. Appends are thread-safe."""

    def __init__(self, path: Path, redact: MessageRedactor | None = None) -> None:
        self.path = path
        self.redact = redact
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
            progress.apply(record)
            good += len(line)
        if good < len(data):
            with self.path.open("r+b") as fh:  # later appends must not land after garbage
                fh.truncate(good)
        return progress

    def _redacted(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The messages as they may be written, and ``{"scrubbed": …}`` if anything was removed."""
        if self.redact is None:
            return messages, {}
        clean: list[dict[str, Any]] = []
        scrubbed: dict[str, dict[str, int]] = {}
        for message in messages:
            redacted, counts = self.redact(message)
            clean.append(redacted)
            if counts:
                scrubbed[message["ts"]] = counts
        return clean, ({"scrubbed": scrubbed} if scrubbed else {})

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)  # one write: a kill leaves the record whole or torn, never mixed
            finally:
                os.close(fd)

    def add_history_page(self, messages: list[dict[str, Any]], more: bool) -> dict[str, Any]:
        """Journal one history page; returns the record written (redacted messages)."""
        clean, scrubbed = self._redacted(messages)
        record = {"history": clean, "more": more, **scrubbed}
        self._append(record)
        return record

    def add_thread(self, root_ts: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Journal one finished thread; returns the record written (redacted messages)."""
        clean, scrubbed = self._redacted(messages)
        record = {"thread": root_ts, "messages": clean, **scrubbed}
        self._append(record)
        return record


class ScrapeCheckpoint:
    """The checkpoint directory of one team's scrape."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_fd: int | None = None

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    def journal(self, channel_id: str, redact: MessageRedactor | None = None) -> ChannelJournal:
        return ChannelJournal(self.root / "channels" / f"{channel_id}.jsonl", redact)

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
