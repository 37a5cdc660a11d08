"""Reporting a slash command's outcome through its ``response_url``.

Slack gives every slash command a ``response_url``: a message posted there appears where the
command was typed — also in a channel the bot is not a member of — and it works at most 5 times
within 30 minutes. ``/doppel train`` acks at once and reports its progress there. When the URL
is used up, expired or failing, the report goes to the command's channel instead (the bot may
not be able to post there; then it is logged).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk.webhook import WebhookClient

log = logging.getLogger("doppelkit.bolt")
MAX_USES = 5
LIFETIME_S = 30 * 60


class ResponseUrls:
    """Uses of each response URL, so none is used more than Slack allows."""

    def __init__(self, *, timeout_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}  # url → (first seen, uses)

    def remember(self, url: str) -> None:
        """The command arrived now: its URL's 30 minutes start."""
        with self._lock:
            self._seen.setdefault(url, (self.clock(), 0))

    def send(self, url: str, text: str) -> bool:
        """Post ``text`` where the command was typed; False when the URL may not or did not work."""
        now = self.clock()
        with self._lock:
            first, uses = self._seen.get(url, (now, 0))
            if uses >= MAX_USES or now - first > LIFETIME_S:
                return False
            self._seen[url] = (first, uses + 1)
            self._forget_expired(now)
        try:
            response = WebhookClient(url, timeout=int(max(1, self.timeout_s))).send(
                text=text, response_type="in_channel", replace_original=False
            )
        except Exception as exc:
            log.warning("response_url failed (%s); reporting in the channel", type(exc).__name__)
            return False
        if response.status_code != 200:
            log.warning("response_url answered HTTP %s; reporting in the channel", response.status_code)
            return False
        return True

    def _forget_expired(self, now: float) -> None:
        for url in [u for u, (first, _) in self._seen.items() if now - first > LIFETIME_S]:
            del self._seen[url]
