"""Durable reply jobs: every mention the bot must answer is a row in the store before the ack.

The life of a job (:class:`ReplyJobs`):

1. **Recorded** (before the ack). :meth:`ReplyJobs.submit` hands the job to the recorder thread
   and waits at most ``ack_wait_s`` for the insert. The job's key is the message (team, channel,
   ts): a retry, a concurrent duplicate or the app_mention/message double delivery find it taken.
   If the store does not answer in time (a write-locked SQLite file, a database restarting) the
   ack goes out anyway; the job stays in memory, the recorder keeps retrying, ``/healthz`` and
   the log say so, and the job is queued once it is recorded.
2. **Claimed** by a worker of this process (or of any process sharing the store): the claim
   is a conditional update with a lease the claiming process renews while it lives. A job whose
   lease ran out — its process was killed — is claimable again; on start, jobs held by a dead
   earlier process on this host are released at once.
3. **Composed and posted.** The composed reply (every message, the identity) is saved before
   the first post; after each post the count of posted messages is saved; each post carries the
   job and part in its metadata. A worker that resumes a job posts only what is missing (it
   reads the thread for parts posted just before a crash), so no part is posted twice or lost.

Limits: at most ``queue_max`` jobs wait for a worker; past that a mention gets a short "busy"
notice (posted by a separate notice thread, so it is not stuck behind the queue). A job that
waited longer than ``max_age_s`` gets a short apology instead of a stale answer. A workspace
past ``replies_per_minute`` gets one notice a minute and no replies; the store counts them as
it records each job, so the limit holds across every process sharing it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from doppelkit_slack.store import (
    JOB_DONE,
    JOB_FAILED,
    KIND_BUSY,
    KIND_LIMIT,
    KIND_LIMITED,
    KIND_REPLY,
    JobRecord,
    PersonaStore,
    now,
)

log = logging.getLogger("doppelkit.bolt")
REPLY, BUSY, LIMIT = KIND_REPLY, KIND_BUSY, KIND_LIMIT
NOTICES = (BUSY, LIMIT)  # posted by the notice thread, never stuck behind the replies
MAX_UNRECORDED = 10_000  # jobs held in memory while the store is unavailable
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class JobSettings:
    workers: int = 2
    queue_max: int = 100
    max_age_s: float = 300.0
    lease_s: float = 60.0
    ack_wait_s: float = 0.025
    poll_s: float | None = None  # how often leases are renewed and the store is swept; lease_s / 4
    degraded_after_s: float = 5.0  # a job unrecorded this long makes /healthz say "degraded"
    replies_per_minute: int | None = None  # per workspace, across processes (the store counts)


class ClaimedJob:
    """A job this process holds: saving progress goes through the owner check."""

    def __init__(self, record: JobRecord, store: PersonaStore, owner: str) -> None:
        self.record = record
        self.store = store
        self.owner = owner
        self.reply: dict[str, Any] | None = record.reply
        self.posted = record.posted

    @property
    def resumed(self) -> bool:
        """Claimed before by a worker that did not finish it (crashed, killed, lost its lease)."""
        return self.record.attempts > 1

    @property
    def age_s(self) -> float:
        return (now() - self.record.created_at).total_seconds()

    def save_reply(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self._update(reply=reply, posted=0)

    def save_posted(self, posted: int) -> None:
        self.posted = posted
        self._update(posted=posted)

    def finish(self, error: str | None = None) -> None:
        self._update(state=JOB_FAILED if error else JOB_DONE, error=error)

    def _update(self, **values: Any) -> None:
        if not self.store.update_job(self.record.key, self.owner, **values):
            log.warning("job %s was taken over by another worker (its lease ran out)", self.record.key)


Handler = Callable[[ClaimedJob], None]


class JobAbandoned(Exception):
    """Raised by a handler to give its job back unfinished: the bot is stopping and the job
    could not be done (its engine was closed under it). The next bot finishes it."""


@dataclass
class _Pending:
    values: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    outcome: str = "unrecorded"
    since: float = field(default_factory=time.monotonic)


class ReplyJobs:
    """The recorder, the workers and the lease keeper of the reply jobs (see the module doc)."""

    def __init__(self, store: PersonaStore, handler: Handler, settings: JobSettings) -> None:
        self.store = store
        self.handler = handler
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = timedelta(seconds=settings.lease_s)
        self.counts: Counter[str] = Counter()
        self.errors: deque[dict[str, Any]] = deque(maxlen=10)  # last give-ups, newest last
        self._lock = threading.Condition()
        self._unrecorded: dict[str, _Pending] = {}
        self._queue: deque[str] = deque()  # reply jobs waiting for a worker (keys)
        self._notices: deque[str] = deque()  # busy and limit notices (keys)
        self._known: set[str] = set()  # keys queued here or being worked on here
        self._working = 0
        self._active: set[str] = set()  # keys a worker of this process holds right now
        self._queued_at: dict[str, float] = {}
        self._store_error: str | None = None
        self._store_since = time.monotonic()
        self._writing_since: float | None = None
        self._stopping = threading.Event()
        self._closing = threading.Event()  # workers take no new job; the recorder still records
        self._threads: list[threading.Thread] = []

    # --- lifetime -------------------------------------------------------------------------------

    def start(self) -> ReplyJobs:
        targets = [("doppel-record", self._record_loop), ("doppel-leases", self._lease_loop)]
        targets += [("doppel-notice", lambda: self._work_loop(self._notices))]
        targets += [
            (f"doppel-reply-{i}", lambda: self._work_loop(self._queue)) for i in range(self.settings.workers)
        ]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def close(self, wait: bool = False, timeout: float = 10.0) -> None:
        """Stop taking work. ``wait``: finish what is queued here first. Jobs left unfinished
        stay in the store; a later start (or another process) finishes them. Mentions acked but
        held in memory (the store was slow) are recorded first, within ``timeout``: after a
        stop they would be lost."""
        if wait:
            self.wait_idle(timeout)
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closing.set()
            self._lock.notify_all()
            while self._unrecorded and self._threads and time.monotonic() < deadline:
                self._lock.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            lost = list(self._unrecorded)
        if lost:
            log.error(
                "stopping with %d acked mention(s) the store has not recorded; unless it does now, "
                "they get no reply: %s",
                len(lost),
                ", ".join(lost[:20]),
            )
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not any(t.is_alive() for t in self._threads):
            try:  # nobody here works on them any more: the next process need not wait for the lease
                self.store.release_jobs(self.owner)
            except Exception as exc:
                log.warning("could not hand back unfinished reply jobs: %s", exc)
        self._threads = []

    @property
    def closing(self) -> bool:
        """The bot is stopping: a job failing now is given back, not answered with an apology."""
        return self._closing.is_set()

    # --- before the ack -------------------------------------------------------------------------

    def submit(self, values: dict[str, Any]) -> str:
        """Record a job (``values`` as :meth:`PersonaStore.add_job` takes them, without ``kind``):
        ``queued``, ``busy`` (queued as a busy notice), ``limit`` (the workspace is over its replies
        per minute: queued as that notice), ``limited`` (over it and noticed already: nothing to
        do), ``duplicate``, or ``unrecorded`` (the store did not answer within ``ack_wait_s``;
        kept in memory and recorded as soon as it can be)."""
        key = values["key"]
        with self._lock:
            if key in self._unrecorded or key in self._known:
                return "duplicate"
            if len(self._unrecorded) >= MAX_UNRECORDED:
                self.counts["dropped_unrecorded"] += 1
                log.error("store unavailable and %d jobs waiting in memory: dropping %s", MAX_UNRECORDED, key)
                return "dropped"
            busy = len(self._queue) >= self.settings.queue_max
            # Its age counts from now, even if the store records it only minutes later.
            pending = _Pending({**values, "kind": BUSY if busy else REPLY, "created_at": now()})
            self._unrecorded[key] = pending
            self._lock.notify_all()
        if pending.done.wait(self.settings.ack_wait_s):
            return pending.outcome
        log.warning(
            "the store did not record job %s within %.2f s; acked, recording it later",
            key,
            self.settings.ack_wait_s,
        )
        self.counts["recorded_late"] += 1
        return "unrecorded"

    def _record_loop(self) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            with self._lock:
                while not self._unrecorded and not self._stopping.is_set():
                    self._lock.wait(0.5)
                if self._stopping.is_set():
                    return
                key, pending = next(iter(self._unrecorded.items()))
                self._writing_since = time.monotonic()
            try:
                kind = self.store.add_job(pending.values, replies_per_minute=self.settings.replies_per_minute)
            except Exception as exc:  # locked, full, gone: keep it in memory and try again
                self._store_failed(exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            finally:
                self._writing_since = None
            backoff = 0.05
            self._store_ok()
            with self._lock:
                del self._unrecorded[key]
                if kind is None:
                    pending.outcome = "duplicate"
                elif kind == KIND_LIMITED:
                    self.counts["limited"] += 1  # not answered: over the limit, noticed already
                    log.info(
                        "team %s is over its replies per minute; not answering %s",
                        pending.values["team"],
                        key,
                    )
                    pending.outcome = "limited"
                else:
                    if kind == LIMIT:
                        self.counts["limited"] += 1
                        log.warning("team %s is over its replies per minute: %s gets the notice",
                                    pending.values["team"], key)  # fmt: skip
                    self._enqueue(key, kind)
                    pending.outcome = "queued" if kind == REPLY else kind
                self._lock.notify_all()  # close() waits for the last ones
            pending.done.set()

    def _enqueue(self, key: str, kind: str) -> None:
        """Queue ``key`` here (caller holds the lock)."""
        if key in self._known:
            return
        self._known.add(key)
        self._queued_at[key] = time.monotonic()
        (self._notices if kind in NOTICES else self._queue).append(key)
        if kind == BUSY:
            self.counts["busy"] += 1
            log.warning("reply queue full (%d waiting): %s gets a busy notice", len(self._queue), key)
        self._lock.notify_all()

    # --- workers ---------------------------------------------------------------------------------

    def _work_loop(self, queue: deque[str]) -> None:
        while True:
            with self._lock:
                while not queue and not self._closing.is_set():
                    self._lock.wait(0.5)
                if self._closing.is_set():
                    return  # what is queued stays in the store for the next start
                key = queue.popleft()
                self._queued_at.pop(key, None)
                self._working += 1
            try:
                self._run(key)
            finally:
                with self._lock:
                    self._working -= 1
                    self._known.discard(key)
                    self._lock.notify_all()

    def _run(self, key: str) -> None:
        try:
            record = self.store.claim_job(key, self.owner, self.lease)
        except Exception as exc:
            self._store_failed(exc)
            return  # still in the store: the sweep queues it again
        if record is None:
            return  # another worker has it, or it is finished
        claimed = ClaimedJob(record, self.store, self.owner)
        with self._lock:
            self._active.add(key)
        try:
            self.handler(claimed)
        except JobAbandoned as exc:  # neither finished nor failed: the lease hands it on
            log.warning("reply job %s left to the next bot: %s", key, exc)
        except Exception as exc:  # the handler reports its own failures; this is a last resort
            log.exception("reply job %s failed", key)
            try:
                claimed.finish(f"{type(exc).__name__}: {exc}"[:1000])
            except Exception:  # the store failed: the lease runs out and the job is retried
                log.exception("could not record the failure of job %s; it will be retried", key)
        finally:
            with self._lock:
                self._active.discard(key)

    # --- leases and the sweep ---------------------------------------------------------------------

    def _lease_loop(self) -> None:
        poll = self.settings.poll_s or self.settings.lease_s / 4
        first = True
        pruned = time.monotonic()
        while not self._stopping.is_set():
            try:
                if first:  # at start: whatever an earlier run left, at once
                    self._release_dead_owners()
                    self._sweep(0.0)
                    first = False
                with self._lock:
                    active = sorted(self._active)
                self.store.renew_leases(self.owner, self.lease, active)
                self._sweep(poll)
                if time.monotonic() - pruned > PRUNE_EVERY_S:
                    pruned = time.monotonic()
                    self.store.prune_claims()  # finished jobs and claims older than a day
            except Exception as exc:
                self._store_failed(exc)
            self._stopping.wait(poll)

    def _release_dead_owners(self) -> None:
        """Running jobs of an earlier process on this host that is gone: claimable now."""
        host = socket.gethostname()
        for owner in self.store.job_owners():
            owner_host, _, rest = owner.partition(":")
            pid_text = rest.partition(":")[0]
            if owner == self.owner or owner_host != host or not pid_text.isdigit():
                continue
            if int(pid_text) == os.getpid() or not _alive(int(pid_text)):
                released = self.store.release_jobs(owner)
                if released:
                    log.warning("%d reply job(s) of a stopped bot process are finished now", released)

    def _sweep(self, poll: float) -> None:
        """Queue jobs nobody works on: left by a crash, recorded late, or by another process."""
        before = now() - timedelta(seconds=poll)
        for key, kind in self.store.claimable_jobs(queued_before=before):
            with self._lock:
                self._enqueue(key, kind)

    # --- observing ---------------------------------------------------------------------------------

    def _store_failed(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        if self._store_error is None:
            log.error("the store cannot be written (%s); reply jobs wait in memory", reason)
            self._store_since = time.monotonic()
        self._store_error = reason
        self.counts["store_errors"] += 1

    def _store_ok(self) -> None:
        if self._store_error is not None:
            log.warning("the store works again (after %.0f s)", time.monotonic() - self._store_since)
            self._store_error = None

    def record_failure(self, key: str, code: str, detail: str) -> None:
        """A reply given up for good (counted and listed on ``/healthz``)."""
        self.counts["failed"] += 1
        self.errors.append(
            {"job": key, "error": code, "detail": detail[:200], "at": datetime.now().isoformat()}
        )

    def store_state(self) -> str:
        if self._store_error is not None:
            return f"unavailable: {self._store_error}"
        writing = self._writing_since
        if writing is not None and time.monotonic() - writing > self.settings.ack_wait_s:
            return f"slow: a write has waited {time.monotonic() - writing:.1f} s (locked?)"
        return "ok"

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` shows. ``status`` is ``degraded`` while the store fails, or a job has
        waited in memory for it longer than ``degraded_after_s`` (a locked or stalled store) —
        not for the few milliseconds a burst may keep one there."""
        with self._lock:
            waiting = list(self._queued_at.values())
            unrecorded_since = min((p.since for p in self._unrecorded.values()), default=None)
            snapshot = {
                "queued": len(self._queue),
                "queue_max": self.settings.queue_max,
                "notices_queued": len(self._notices),
                "in_progress": self._working,
                "unrecorded": len(self._unrecorded),
            }
        oldest = time.monotonic() - min(waiting) if waiting else 0.0
        stalled = unrecorded_since is not None and (
            time.monotonic() - unrecorded_since > self.settings.degraded_after_s
        )
        store = self.store_state()
        return {
            "status": "degraded" if stalled or store.startswith("unavailable") else "ok",
            **snapshot,
            "oldest_queued_s": round(oldest, 3),
            "max_age_s": self.settings.max_age_s,
            "store": store,
            "counts": dict(self.counts),
            "last_failures": list(self.errors),
        }

    @property
    def idle(self) -> bool:
        with self._lock:
            return not (self._unrecorded or self._queue or self._notices or self._working)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._unrecorded or self._queue or self._notices or self._working:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
