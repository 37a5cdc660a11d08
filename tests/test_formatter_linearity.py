"""Formatting is linear in thread length (cheap check; benchmarks/bench_formatter.py measures
1k vs 10k). Quadratic formatting would show ~100x here; the bound is loose for shared CI."""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest

from doppelkit.builtins.formatters import AlpacaFormatter, ChatFormatter
from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport
from doppelkit.testing.samples import long_thread, sample_persona


def best_time(formatter: Any, n: int) -> float:
    thread, persona = long_thread(n), sample_persona()
    best = float("inf")
    gc.disable()
    try:
        for _ in range(5):
            start = time.perf_counter()
            for _ in formatter.examples(thread, persona, DatasetReport()):
                pass
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return best


@pytest.mark.parametrize("formatter_cls", [ChatFormatter, AlpacaFormatter])
def test_ten_times_the_messages_take_about_ten_times_as_long(
    formatter_cls: Any, run_context: RunContext
) -> None:
    formatter = formatter_cls(formatter_cls.Config(), run_context)
    best_time(formatter, 100)  # warm up
    ratio = best_time(formatter, 3000) / best_time(formatter, 300)
    assert ratio < 20, f"formatting 10x the messages took {ratio:.1f}x as long"


def test_context_work_per_reply_is_bounded_by_the_budget(run_context: RunContext) -> None:
    formatter = ChatFormatter(ChatFormatter.Config(max_context_messages=5), run_context)
    for example in formatter.examples(long_thread(2000), sample_persona(), DatasetReport()):
        assert example.meta["context_messages"] <= 5
