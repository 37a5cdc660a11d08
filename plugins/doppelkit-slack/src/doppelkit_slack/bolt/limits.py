"""Per-workspace limits on replies: ``frontend.replies_per_minute``.

(The other per-workspace limits live where their state is: ``frontend.persona_limit`` in the
store's claim of a new persona, ``frontend.training_limit`` in :mod:`.training`.)

Counted per process over a sliding minute. A mention beyond the limit is not answered; the
first one in each minute gets a notice in its thread saying why, the rest are only logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("doppelkit.bolt")
WINDOW_S = 60.0


class ReplyLimiter:
    def __init__(
        self,
        per_minute: int,
        notice: Callable[[str, str, str, str], object],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.notice = notice  # (team, channel, thread_ts, text): posted off the ack path
        self.clock = clock
        self._lock = threading.Lock()
        self._replies: dict[str, deque[float]] = {}
        self._noticed: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="doppel-limit")

    def _recent(self, team: str, now: float) -> deque[float]:
        times = self._replies.setdefault(team, deque())
        while times and now - times[0] >= WINDOW_S:
            times.popleft()
        return times

    def reserve(self, team: str) -> bool:
        """Count one reply for ``team`` if it is under the limit; check and count are one step, so
        mentions accepted at the same moment on different threads cannot pass the limit together."""
        with self._lock:
            now = self.clock()
            recent = self._recent(team, now)
            if len(recent) >= self.per_minute:
                return False
            recent.append(now)
            return True

    def release(self, team: str) -> None:
        """Give back the latest reservation: the mention turned out to need no reply."""
        with self._lock:
            recent = self._replies.get(team)
            if recent:
                recent.pop()

    def refuse(self, team: str, channel: str, thread_ts: str) -> None:
        """A mention over the limit: a notice the first time in the minute, then silence."""
        with self._lock:
            now = self.clock()
            if now - self._noticed.get(team, -WINDOW_S) < WINDOW_S:
                log.info("team %s is over %d replies a minute; not answering", team, self.per_minute)
                return
            self._noticed[team] = now
        text = (
            f"This workspace asked me for more than {self.per_minute} replies in the last minute "
            "(the limit); I'll answer mentions again in a moment."
        )
        self._pool.submit(self.notice, team, channel, thread_ts, text)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
