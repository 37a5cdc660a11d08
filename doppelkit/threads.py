"""Stream transforms that ``ingest`` applies to a source's threads before formatting.

Both work one thread at a time, so ingest keeps streaming in bounded memory:

* :func:`with_user_labels` — attach the display names of the people each thread involves
  (``Thread.user_labels``), so formatters need no workspace;
* :func:`group_sessions` — merge lone top-level messages of one channel that follow each other
  within N minutes into one conversation (``kind="session"``), for workspaces that rarely use
  threads (``dataset.session_gap_minutes``);
* :func:`threadless_sessions` — the same, only in channels without any thread (exports from
  before threads existed; ``dataset.threadless_gap_minutes``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from doppelkit.models import Thread, Workspace, updated
from doppelkit.mrkdwn import mentioned_channel_ids, mentioned_user_ids


def referenced_user_ids(thread: Thread) -> set[str]:
    """Authors and mentioned users of ``thread``."""
    ids: set[str] = set()
    for message in thread.messages:
        if message.user:
            ids.add(message.user)
        if "<@" in message.text:
            ids.update(mentioned_user_ids(message.text))
    return ids


def with_user_labels(threads: Iterable[Thread], workspace: Workspace) -> Iterator[Thread]:
    """Fill each thread's ``user_labels`` and ``channel_labels`` from ``workspace`` (labels a
    source set are kept)."""
    return label_threads(threads, {user.id: user.label for user in workspace.users}, workspace.channels)


def label_threads(
    threads: Iterable[Thread], labels: Mapping[str, str], channels: Mapping[str, str] | None = None
) -> Iterator[Thread]:
    """:func:`with_user_labels` with the workspace's labels already collected (user ID →
    label, channel ID → name).

    Runs once per thread of a workspace, so it looks at each message once and copies a thread
    only when it gains labels (without re-validating it, see :func:`~doppelkit.models.updated`).
    """
    channels = channels or {}
    for thread in threads:
        have = thread.user_labels
        missing: dict[str, str] = {}
        named: dict[str, str] = {}
        for message in thread.messages:
            user = message.user
            if user and user not in have and user in labels:
                missing[user] = labels[user]
            text = message.text
            if "<@" in text:
                for mentioned in mentioned_user_ids(text):
                    if mentioned not in have and mentioned in labels:
                        missing[mentioned] = labels[mentioned]
            if "<#" in text and channels:
                for channel_id in mentioned_channel_ids(text):
                    if channel_id in channels and channel_id not in thread.channel_labels:
                        named[channel_id] = channels[channel_id]
        if missing or named:
            changes: dict[str, dict[str, str]] = {}
            if missing:
                changes["user_labels"] = {**have, **missing}
            if named:
                changes["channel_labels"] = {**thread.channel_labels, **named}
            thread = updated(thread, **changes)
        yield thread


def is_lone_top_level(thread: Thread) -> bool:
    """A top-level channel message nobody (left in the data) replied to."""
    if thread.kind != "thread" or len(thread.messages) != 1:
        return False
    message = thread.messages[0]
    return message.thread_ts in (None, message.ts)


def merge_session(parts: list[Thread]) -> Thread:
    """One ``kind="session"`` thread from consecutive lone messages of one channel."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    labels: dict[str, str] = {}
    for part in parts:
        labels.update(part.user_labels)
    return first.model_copy(
        update={
            "messages": [part.messages[0] for part in parts],
            "kind": "session",
            "private": any(part.private for part in parts),
            "user_labels": labels,
        }
    )


class SessionGrouper:
    """:func:`group_sessions` one thread at a time (``feed``, then ``flush`` at the end).

    ``ingest`` drives it directly, so work split by channel can tell where a channel's first
    lone message arrived and which session was still open at its end (see
    :mod:`doppelkit.ingestion`).
    """

    def __init__(self, gap_minutes: float) -> None:
        self.gap_seconds = gap_minutes * 60.0
        self.pending: list[Thread] = []

    def feed(self, thread: Thread) -> list[Thread]:
        """The threads ready to go on, in order, now that ``thread`` arrived."""
        if not is_lone_top_level(thread):
            return [thread]
        ready: list[Thread] = []
        if self.pending:
            last = self.pending[-1]
            same_channel = (last.team, last.channel) == (thread.team, thread.channel)
            delta = thread.messages[0].ts_key - last.messages[0].ts_key
            if same_channel and 0 <= delta <= self.gap_seconds:
                self.pending.append(thread)
                return ready
            ready.append(merge_session(self.pending))
        self.pending = [thread]
        return ready

    def flush(self) -> list[Thread]:
        """The session still open at the end of the stream, if any."""
        ready = [merge_session(self.pending)] if self.pending else []
        self.pending = []
        return ready


def group_sessions(threads: Iterable[Thread], gap_minutes: float) -> Iterator[Thread]:
    """Merge lone top-level messages of a channel less than ``gap_minutes`` apart.

    Sources yield each top-level message without replies as its own one-message thread, in
    channel order. Here consecutive ones of the same channel whose timestamps are at most
    ``gap_minutes`` apart become one session; threads with replies pass through untouched (a
    thread is its own conversation) and do not interrupt a session. A session's ``ts`` is its
    first message's, so the held-out split stays deterministic. A session goes on when the next
    lone message does not belong to it, or at the end.
    """
    grouper = SessionGrouper(gap_minutes)
    for thread in threads:
        yield from grouper.feed(thread)
    yield from grouper.flush()


def threadless_sessions(
    threads: Iterable[Thread], gap_minutes: float, on_grouped: Callable[[Thread], None] = lambda _: None
) -> Iterator[Thread]:
    """Time-gap sessions in the channels of ``threads`` where nobody ever replied in a thread.

    Slack has threads since 2017: in an older export (or a channel nobody threads in) every
    message stands alone and every reply would be learnt without what it answered. Such a
    channel's messages are grouped as :func:`group_sessions` groups them; channels with any
    thread pass through untouched. A source yields a channel's threads together, so one channel
    is held at a time; ``on_grouped`` is called with the first thread of each channel grouped.
    """
    channel: list[Thread] = []

    def flush() -> Iterator[Thread]:
        if len(channel) > 1 and all(is_lone_top_level(t) for t in channel):
            on_grouped(channel[0])
            yield from group_sessions(channel, gap_minutes)
        else:
            yield from channel

    for thread in threads:
        if channel and (channel[0].team, channel[0].channel) != (thread.team, thread.channel):
            yield from flush()
            channel = []
        channel.append(thread)
    yield from flush()
