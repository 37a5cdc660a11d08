"""Formatting is linear in a thread's length: a 10k-message thread vs a 1k one (the baseline).

Not part of the default test run. Run either way::

    .venv/bin/pytest benchmarks/bench_formatter.py -q -s
    .venv/bin/python benchmarks/bench_formatter.py

Each size is timed several times and the best run counts (the least disturbed by other load).
The 1k thread is the baseline measured in the same run, so machine speed cancels out.
Quadratic formatting (rebuilding the history for every reply) would make the ratio ~100x.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from doppelkit.builtins.formatters import AlpacaFormatter, ChatFormatter
from doppelkit.models import DatasetReport, Thread
from doppelkit.testing.helpers import make_context
from doppelkit.testing.samples import long_thread, sample_persona

SMALL, LARGE = 1_000, 10_000
MAX_RATIO = 12.0
REPEATS = 5


def best_time(formatter: Any, thread: Thread, repeats: int = REPEATS) -> float:
    """Best wall time of formatting ``thread``, with the garbage collector paused (as timeit
    does): its full collections cost more with more live objects and blur the ratio."""
    persona = sample_persona()
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            count = sum(1 for _ in formatter.examples(thread, persona, DatasetReport()))
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    assert count > 0
    return best


def measure(formatter_cls: Any) -> tuple[float, float]:
    context = make_context(Path(tempfile.mkdtemp()))
    formatter = formatter_cls(formatter_cls.Config(), context)
    best_time(formatter, long_thread(200), repeats=2)  # warm caches and imports
    return best_time(formatter, long_thread(SMALL)), best_time(formatter, long_thread(LARGE))


def report(name: str, small: float, large: float) -> str:
    line = (
        f"{name}: {SMALL} messages {small * 1e3:.1f} ms, {LARGE} messages {large * 1e3:.1f} ms, "
        f"ratio {large / small:.1f}x (linear: 10x, limit {MAX_RATIO:.0f}x)"
    )
    print(line)
    return line


def test_chat_formatting_is_linear() -> None:
    small, large = measure(ChatFormatter)
    report("chat", small, large)
    assert large / small <= MAX_RATIO


def test_alpaca_formatting_is_linear() -> None:
    small, large = measure(AlpacaFormatter)
    report("alpaca", small, large)
    assert large / small <= MAX_RATIO


if __name__ == "__main__":
    for cls in (ChatFormatter, AlpacaFormatter):
        report(cls.name, *measure(cls))
