"""Ingest speed and memory of the ``slack_export`` source on large synthetic exports.

Run: .venv/bin/pytest benchmarks/bench_ingest.py --benchmark-enable -s
Size: DOPPELKIT_BENCH_MESSAGES (default 20000) messages in the small export, 10x in the large
one; DOPPELKIT_BENCH_MESSAGES=100000 reads a 1M-message export (about 1.4 GB, minutes).

Reported, each measured in the same run as its baseline:
* ingest wall time ÷ time to only ``json.loads`` the same day files (target ≤ 1.3x);
* 10x messages → time ratio (target ≤ 11x, i.e. linear);
* peak traced memory, which should follow the largest channel, not the workspace: the large
  export has 10x the channels, each the size of the small export's.
"""

from __future__ import annotations

import gc
import json
import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from doppelkit.models import DatasetReport
from doppelkit.testing.helpers import make_context
from doppelkit_slack.sources.export import SlackExportSource
from doppelkit_slack.testing.synthetic import generate

MESSAGES = int(os.environ.get("DOPPELKIT_BENCH_MESSAGES", "20000"))
CHANNELS = 20
ROUNDS = 3


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("exports")
    small = generate(root / "small", MESSAGES, channels=CHANNELS)
    large = generate(root / "large", MESSAGES * 10, channels=CHANNELS * 10)
    return small, large


def day_files(export: Path) -> list[Path]:
    return sorted(export.glob("*/*.json"))


def parse_only(export: Path) -> Callable[[], int]:
    files = day_files(export)

    def run() -> int:
        count = 0
        for path in files:
            with path.open("rb") as fh:
                count += len(json.loads(fh.read()))
        return count

    return run


def ingest(export: Path, home: Path) -> Callable[[], int]:
    source = SlackExportSource(SlackExportSource.Config(path=export), make_context(home))

    def run() -> int:
        return sum(len(thread.messages) for thread in source.threads(DatasetReport()))

    return run


def wall_time(fn: Callable[[], int]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_wall_time(fn: Callable[[], int]) -> float:
    return min(wall_time(fn) for _ in range(ROUNDS))


def interleaved(a: Callable[[], int], b: Callable[[], int]) -> tuple[float, float]:
    """Best wall times of ``a`` and ``b``, alternated so machine noise hits both alike."""
    times = [(wall_time(a), wall_time(b)) for _ in range(ROUNDS)]
    return min(t for t, _ in times), min(t for _, t in times)


def peak_memory(fn: Callable[[], int]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def size_of(export: Path) -> int:
    return sum(p.stat().st_size for p in export.rglob("*") if p.is_file())


def test_ingest_vs_json_parse(exports: tuple[Path, Path], tmp_path: Path) -> None:
    _, large = exports
    parse_time, ingest_time = interleaved(parse_only(large), ingest(large, tmp_path))
    ratio = ingest_time / parse_time
    messages = parse_only(large)()
    print(
        f"\ningest of {messages:,} messages ({size_of(large) / 1e6:.0f} MB): {ingest_time:.2f} s; "
        f"json.loads of the same files: {parse_time:.2f} s; ratio {ratio:.2f}x (target ≤ 1.3x); "
        f"{messages / ingest_time:,.0f} messages/s"
    )
    assert ratio < 4, "ingest got much slower than parsing its JSON"


def test_ten_times_the_messages_takes_ten_times_as_long(exports: tuple[Path, Path], tmp_path: Path) -> None:
    small, large = exports
    small_time = best_wall_time(ingest(small, tmp_path))
    large_time = best_wall_time(ingest(large, tmp_path))
    scaling = large_time / small_time
    print(f"\n10x messages: {small_time:.2f} s → {large_time:.2f} s = {scaling:.1f}x (target ≤ 11x)")
    assert scaling < 14, "ingest time grows faster than the number of messages"


def test_peak_memory_follows_the_largest_channel(exports: tuple[Path, Path], tmp_path: Path) -> None:
    small, large = exports
    small_peak = peak_memory(ingest(small, tmp_path))
    large_peak = peak_memory(ingest(large, tmp_path))
    print(
        f"\npeak traced memory: {small_peak / 1e6:.1f} MB for {size_of(small) / 1e6:.0f} MB in "
        f"{CHANNELS} channels; {large_peak / 1e6:.1f} MB for {size_of(large) / 1e6:.0f} MB in "
        f"{CHANNELS * 10} channels of the same size"
    )
    assert large_peak < 2 * small_peak, "memory grows with the workspace, not the largest channel"


def test_ingest_benchmark(benchmark, exports: tuple[Path, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    small, _ = exports
    count = benchmark.pedantic(ingest(small, tmp_path), rounds=ROUNDS, iterations=1)
    assert count > 0
