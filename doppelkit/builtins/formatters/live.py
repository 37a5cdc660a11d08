"""Serve-time preparation of a live Slack thread, before it is formatted into a prompt.

At training time ``ingest`` scrubs every thread before the formatter sees it; a live thread
comes straight from the frontend, so the formatters scrub it here with the same hooks and the
same ``scrub`` config. Scrubbing is idempotent, so already-scrubbed text comes out unchanged
and the serving prompt stays byte-identical to the training prefix.
"""

from __future__ import annotations

from collections import Counter

from doppelkit.interfaces import RunContext
from doppelkit.models import Thread
from doppelkit.pipeline import scrub_thread


def scrub_live_thread(thread: Thread, context: RunContext, counts: Counter[str] | None = None) -> Thread:
    """``thread`` with the ``scrub_message`` chain applied (unchanged without hooks)."""
    if context.hook is None:
        return thread
    return scrub_thread(
        thread, context.hook, counts if counts is not None else Counter(), context.settings.scrub
    )
