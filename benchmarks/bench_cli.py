"""Start-up cost: `doppelkit --help` and building the plugin manager.

Run: .venv/bin/pytest benchmarks/bench_cli.py --benchmark-enable
"""

from __future__ import annotations

import importlib.metadata
import statistics
import subprocess
import sys
import time

from doppelkit.plugins import build_registries, get_plugin_manager


def _wall(cmd: list[str], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_help_wall_time_vs_bare_interpreter() -> None:
    bare = _wall([sys.executable, "-c", "pass"])
    help_ = _wall([sys.executable, "-m", "doppelkit", "--help"])
    ratio = help_ / bare
    print(f"\n`doppelkit --help`: {help_ * 1000:.0f} ms; bare interpreter {bare * 1000:.0f} ms")
    print(f"ratio {ratio:.1f}x")
    assert ratio < 15, "doppelkit --help got heavy: something imports a big SDK at start-up"


def test_plugin_manager_build(benchmark) -> None:  # type: ignore[no-untyped-def]
    def build() -> None:
        build_registries(get_plugin_manager())

    def scan() -> None:
        list(importlib.metadata.entry_points(group="doppelkit"))

    start = time.perf_counter()
    for _ in range(20):
        scan()
    baseline = (time.perf_counter() - start) / 20
    benchmark(build)
    mean = benchmark.stats.stats.mean
    print(
        f"\nplugin manager + registries: {mean * 1000:.1f} ms; "
        f"entry-point scan alone {baseline * 1000:.1f} ms; ratio {mean / baseline:.1f}x"
    )
