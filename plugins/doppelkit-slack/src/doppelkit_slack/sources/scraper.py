"""Fetching one channel through the Web API: history pages, then every thread's replies.

History is paged newest first on the calling thread; each thread root found is handed to a
bounded worker pool that pages ``conversations.replies``. Every page of history and every
finished thread goes to the channel's journal (:mod:`doppelkit_slack.sources.checkpoint`) as
soon as it arrives, so an interrupted scrape resumes where it stopped: history from the oldest
message already fetched, and only the threads not yet finished. What the scraper keeps in
memory is what the journal wrote (redacted, if the journal redacts), so a fresh fetch and a
resumed one hand on the same messages and the same scrub counts.

Pages are never assumed full: a server may cap ``limit`` (Slack caps non-Marketplace apps at
15 messages), so paging follows ``next_cursor`` only, and later requests ask for the cap seen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass
from typing import Any

from doppelkit_slack.messages import without_lone_surrogates
from doppelkit_slack.sources.checkpoint import ChannelJournal, ChannelProgress
from doppelkit_slack.webclient import SlackCaller, SlackCallError, SlackUnavailableError


@dataclass(frozen=True)
class ChannelRef:
    """A channel as planned at the start of a scrape (stored in ``plan.json``)."""

    id: str
    name: str
    private: bool = False
    is_member: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "private": self.private, "is_member": self.is_member}


class PageSize:
    """The ``limit`` to ask for: the configured size until a server is seen capping pages."""

    def __init__(self, requested: int, on_cap: Callable[[int], None]) -> None:
        self.limit = requested
        self._on_cap = on_cap
        self._lock = threading.Lock()

    def observe(self, asked: int, got: int, more: bool) -> None:
        """A page with more to come but fewer messages than asked for means a cap."""
        if more and 0 < got < asked:
            with self._lock:
                if got < self.limit:
                    self.limit = got
                    self._on_cap(got)


def next_cursor(response: dict[str, Any]) -> str | None:
    metadata = response.get("response_metadata")
    cursor = metadata.get("next_cursor") if isinstance(metadata, dict) else None
    return cursor if isinstance(cursor, str) and cursor else None


def page_messages(response: dict[str, Any]) -> list[dict[str, Any]]:
    messages = response.get("messages")
    if not isinstance(messages, list):
        return []
    # Slack may send half an emoji (a lone surrogate), which no UTF-8 file can hold.
    return [
        without_lone_surrogates(m) for m in messages if isinstance(m, dict) and isinstance(m.get("ts"), str)
    ]


def has_replies(message: dict[str, Any]) -> bool:
    """A thread root with replies to fetch (broadcasts are replies, not roots)."""
    if message.get("thread_ts") != message["ts"]:
        return False
    count = message.get("reply_count")
    return (isinstance(count, int) and count > 0) or "latest_reply" in message


class ChannelScraper:
    """Fetches one channel's raw messages (top-level and every thread's replies)."""

    def __init__(
        self,
        caller: SlackCaller,
        executor: Executor,
        journal: ChannelJournal,
        channel: ChannelRef,
        *,
        latest: str,
        oldest: str | None,
        pages: PageSize,
        on_threads_found: Callable[[int], None] = lambda n: None,
        on_thread_done: Callable[[], None] = lambda: None,
    ) -> None:
        self.caller = caller
        self.executor = executor
        self.journal = journal
        self.channel = channel
        self.latest, self.oldest = latest, oldest
        self.pages = pages
        self.on_threads_found = on_threads_found
        self.on_thread_done = on_thread_done

    def fetch(self) -> tuple[ChannelProgress, int]:
        """All of the channel's messages, resuming from the journal; also how many threads
        came from the journal instead of the API."""
        progress = self.journal.load()
        resumed = len(progress.threads)
        futures: dict[Future[dict[str, Any]], str] = {}
        submitted: set[str] = set(progress.threads)

        def submit(messages: list[dict[str, Any]]) -> None:
            roots = [m["ts"] for m in messages if has_replies(m) and m["ts"] not in submitted]
            for root in roots:
                submitted.add(root)
                futures[self.executor.submit(self._fetch_thread, root)] = root
            if roots:
                self.on_threads_found(len(roots))

        try:
            submit(list(progress.history.values()))
            if not progress.history_done:
                self._fetch_history(progress, submit)
            for future in as_completed(futures):
                progress.apply(future.result())
        except BaseException:
            for future in futures:
                future.cancel()  # not started yet: no request is made for it
            raise
        return progress, resumed

    def _fetch_history(
        self, progress: ChannelProgress, submit: Callable[[list[dict[str, Any]]], None]
    ) -> None:
        # Resuming: continue below the oldest message already fetched (no stale cursor needed).
        latest, inclusive = (progress.oldest_ts, False) if progress.history else (self.latest, True)
        cursor: str | None = None
        while True:
            asked = self.pages.limit
            response = self.caller.call(
                "conversations.history",
                channel=self.channel.id,
                limit=asked,
                latest=latest,
                oldest=self.oldest,
                inclusive=inclusive,
                cursor=cursor,
            )
            messages = page_messages(response)
            new_cursor = next_cursor(response)
            if new_cursor is not None and new_cursor == cursor:
                raise SlackUnavailableError(
                    f"Slack returned the same conversations.history cursor twice for #{self.channel.name}."
                )
            self.pages.observe(asked, len(messages), new_cursor is not None)
            record = self.journal.add_history_page(messages, more=new_cursor is not None)
            progress.apply(record)  # also marks the history done after its last page
            submit(record["history"])
            if new_cursor is None:
                return
            cursor = new_cursor

    def _fetch_thread(self, root_ts: str) -> dict[str, Any]:
        """Every page of one thread, journaled only once complete; returns the journal record."""
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            asked = self.pages.limit
            try:
                response = self.caller.call(
                    "conversations.replies",
                    channel=self.channel.id,
                    ts=root_ts,
                    limit=asked,
                    latest=self.latest,  # the same snapshot as history: replies posted since are left out
                    inclusive=True,
                    cursor=cursor,
                )
            except SlackCallError as exc:
                if exc.error != "thread_not_found":
                    raise
                break  # deleted since history listed it: the root alone remains
            page = page_messages(response)
            messages.extend(page)
            new_cursor = next_cursor(response)
            if new_cursor is not None and new_cursor == cursor:
                raise SlackUnavailableError(
                    f"Slack returned the same conversations.replies cursor twice for thread {root_ts}."
                )
            self.pages.observe(asked, len(page), new_cursor is not None)
            if new_cursor is None:
                break
            cursor = new_cursor
        record = self.journal.add_thread(root_ts, messages)
        self.on_thread_done()
        return record
