"""Stream transforms that ``ingest`` applies to a source's threads before formatting.

Both work one thread at a time, so ingest keeps streaming in bounded memory:

* :func:`with_user_labels` — attach the display names of the people each thread involves
  (``Thread.user_labels``), so formatters need no workspace;
* :func:`group_sessions` — merge lone top-level messages of one channel that follow each other
  within N minutes into one conversation (``kind="session"``), for workspaces that rarely use
  threads (``dataset.session_gap_minutes``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from doppelkit.models import Thread, Workspace
from doppelkit.mrkdwn import mentioned_user_ids


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
    """Fill each thread's ``user_labels`` from ``workspace`` (labels a source set are kept)."""
    labels = {user.id: user.label for user in workspace.users}
    for thread in threads:
        missing = {
            uid: labels[uid]
            for uid in referenced_user_ids(thread)
            if uid in labels and uid not in thread.user_labels
        }
        if missing:
            thread = thread.model_copy(update={"user_labels": {**thread.user_labels, **missing}})
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


def group_sessions(threads: Iterable[Thread], gap_minutes: float) -> Iterator[Thread]:
    """Merge lone top-level messages of a channel less than ``gap_minutes`` apart.

    Sources yield each top-level message without replies as its own one-message thread, in
    channel order. Here consecutive ones of the same channel whose timestamps are at most
    ``gap_minutes`` apart become one session; threads with replies pass through untouched (a
    thread is its own conversation) and do not interrupt a session. A session's ``ts`` is its
    first message's, so the held-out split stays deterministic.
    """
    gap_seconds = gap_minutes * 60.0
    pending: list[Thread] = []
    for thread in threads:
        if not is_lone_top_level(thread):
            yield thread
            continue
        if pending:
            last = pending[-1]
            same_channel = (last.team, last.channel) == (thread.team, thread.channel)
            delta = thread.messages[0].ts_key - last.messages[0].ts_key
            if same_channel and 0 <= delta <= gap_seconds:
                pending.append(thread)
                continue
            yield merge_session(pending)
        pending = [thread]
    if pending:
        yield merge_session(pending)
