"""SIGTERM ends a doppelkit command the way Ctrl-C does: through its ``finally`` blocks.

Python's default for SIGTERM kills the process on the spot, so ``docker stop``, systemd,
Kubernetes or a supervisor stopping ``doppelkit serve`` skipped every clean-up: replies being
generated were cut off instead of finished, reply jobs stayed leased to a dead process, and an
engine's own processes (vLLM's engine core) were left running as orphans.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM. A SystemExit, so that code catching ``Exception``
    (or Ctrl-C's KeyboardInterrupt, as the terminal chat does to stop one reply) lets it pass."""

    def __init__(self, code: int = EXIT_TERMINATED) -> None:  # the argument: so it pickles
        super().__init__(code)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # Once: a second SIGTERM (systemd signals every process of the unit, and +backend=process
    # forwards its own) must not break off the clean-up the first one started. SIGKILL still ends it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, the first SIGTERM raises :class:`Terminated` in the main thread; later ones
    are ignored until the clean-up is done (elsewhere a no-op: only the main thread may handle
    signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        # None: a handler set outside Python, which cannot be put back from here.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
