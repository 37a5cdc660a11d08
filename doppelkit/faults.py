"""Fault injection for crash-safety tests: die abruptly at a named point.

``DOPPELKIT_CRASH_AT=publish:renamed`` makes the process SIGKILL itself when it reaches
``crash_point("publish:renamed")`` — no ``finally`` blocks, no atexit, exactly like a power cut
or an OOM kill. Unset (the normal case) it costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "DOPPELKIT_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
