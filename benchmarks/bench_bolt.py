"""Slack bot ack latency under a busy engine, and one post per event under retries.

The real Bolt app serves over HTTP (uvicorn on a loopback port) against FakeSlack. Signed
``app_mention`` requests arrive at a steady rate (open loop: a request is sent on schedule
whatever the previous one is doing) while the engine is slower than the arrival rate, so
generation is busy for the whole run. A quarter of the events are also redelivered three times
(``X-Slack-Retry-Num`` 1-3, concurrently with the original).

Baseline in the same run: signed ``url_verification`` requests (guard + signature + Bolt
dispatch, no listener, no store) at the same rate.

Three conditions (``SCENARIOS``):

* ``busy_engine`` — the engine is slower than arrivals; every event is answered exactly once;
* ``slow_slack`` — every Web API call takes 5 s (after start-up): acks never call Slack, so
  they stay fast while replies crawl (the run stops without waiting for them);
* ``locked_store`` — another process holds the SQLite store's write lock for the whole
  sending window: acks wait at most ``ack_store_wait_s`` (25 ms), jobs wait in memory, and once
  the lock goes every event is answered exactly once;
* ``slow_slack+locked_store`` — both at once.

Run either way (not part of ``make test``)::

    .venv/bin/pytest benchmarks/bench_bolt.py -q -s
    .venv/bin/python benchmarks/bench_bolt.py

Targets: mention ack p99 < 100 ms in each condition; posts == distinct events (busy engine,
locked store).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "doppelkit-slack" / "tests"))

from bolt_support import (
    BOT_USER,
    SECRET,
    TEAM,
    fake_slack,
    start_bot,
    stop_bot,
    store_event_message,
    wait_for_posts,
)

from doppelkit.testing.fakes import EchoEngine
from doppelkit_slack.testing.bolt import wait_idle
from doppelkit_slack.testing.events import EventSender, app_mention

RATE_PER_S = 40
DURATION_S = 5.0
ENGINE_DELAY_S = 0.06  # 2 workers → ~33 replies/s: slower than arrivals, always busy
RETRIED_SHARE = 4  # every 4th event is redelivered 3 times
P99_TARGET_MS = 100.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def open_loop(send: Any, count: int, rate: float, pool: ThreadPoolExecutor) -> list[float]:
    """Call ``send(i)`` on schedule (``rate`` per second); each returns its latency in seconds."""
    start = time.perf_counter()
    futures = []
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        futures.append(pool.submit(send, i))
    return [f.result() for f in futures]


SCENARIOS = ("busy_engine", "slow_slack", "locked_store", "slow_slack+locked_store")
SLOW_SLACK_S = 5.0


def run(
    rate: float = RATE_PER_S, duration: float = DURATION_S, scenario: str = "busy_engine"
) -> dict[str, Any]:
    stub = fake_slack()
    tmp = tempfile.TemporaryDirectory()
    engine = EchoEngine(versions={(TEAM, "U_ANN"): "v1"}, delay=ENGINE_DELAY_S)
    # Limits high enough that every mention is answered: this measures acks, not the limits
    # (the per-team reply count still runs in each job's transaction).
    bot = start_bot(
        Path(tmp.name), stub, engine, reply_workers=2, reply_queue_max=10_000, replies_per_minute=1_000_000
    )
    sender = EventSender(bot.server.url + "/slack/events", SECRET)
    count = int(rate * duration)
    locker = None
    try:
        with ThreadPoolExecutor(32) as pool:
            challenge = json.dumps({"type": "url_verification", "challenge": "c", "token": "t"}).encode()
            sender.post(challenge)  # warm-up (connection setup, Bolt's first auth.test)
            bot.mention(ts="1600000000.000001", event_id="EvWARM")
            baseline = open_loop(lambda i: sender.post(challenge).elapsed, count, rate, pool)
            wait_for_posts(stub, 1, timeout=10)
            if "slow_slack" in scenario:
                stub.latency = SLOW_SLACK_S
            if "locked_store" in scenario:
                locker = sqlite3.connect(
                    str(bot.runtime.parts.home.state / "doppelkit.db"), isolation_level=None
                )
                locker.execute("BEGIN EXCLUSIVE")

            def mention(i: int) -> float:
                ts = f"1700000000.{i:06d}"
                event = app_mention(
                    f"<@{BOT_USER}> question {i}", user="U_BOB", channel="C0001", ts=ts, team=TEAM
                )
                event_id = f"EvBENCH{i:06d}"
                store_event_message(stub, event)  # Slack has the message before it sends the event
                retries = []
                if i % RETRIED_SHARE == 0:
                    retries = [
                        pool.submit(sender.send_event, event, team=TEAM, event_id=event_id, retry_num=n)
                        for n in (1, 2, 3)
                    ]
                response = sender.send_event(event, team=TEAM, event_id=event_id)
                assert response.status == 200 and all(r.result().status == 200 for r in retries)
                return response.elapsed

            acks = open_loop(mention, count, rate, pool)
        health = bot.runtime.parts.replier.jobs.health()
        queued_at_end = health["queued"] + health["unrecorded"]
        posts = None
        if locker is not None:
            locker.execute("ROLLBACK")  # the lock goes: the jobs waiting in memory are recorded
        if "slow_slack" not in scenario:  # with a 5 s Slack the replies take minutes: not waited for
            wait_idle(bot.runtime, timeout=120)
            wait_for_posts(stub, count + 1, timeout=30)
            time.sleep(0.5)
            posts = len(stub.posts) - 1  # minus the warm-up mention
    finally:
        if locker is not None:
            locker.close()
        stub.latency = 0.0
        stop_bot(bot)
        stub.stop()
        tmp.cleanup()
    return {
        "scenario": scenario,
        "events": count,
        "retries_sent": 3 * len(range(0, count, RETRIED_SHARE)),
        "posts": posts,
        "queued_replies_when_sending_stopped": queued_at_end,
        "mention_ack_ms": {
            "p50": statistics.median(acks) * 1000,
            "p99": percentile(acks, 99) * 1000,
            "max": max(acks) * 1000,
        },
        "baseline_ack_ms": {
            "p50": statistics.median(baseline) * 1000,
            "p99": percentile(baseline, 99) * 1000,
        },
    }


def report(result: dict[str, Any]) -> None:
    m, b = result["mention_ack_ms"], result["baseline_ack_ms"]
    condition = {
        "busy_engine": "with the engine busy",
        "slow_slack": f"with every Slack call taking {SLOW_SLACK_S:.0f} s",
        "locked_store": "with the store write-locked by another process",
        "slow_slack+locked_store": f"with {SLOW_SLACK_S:.0f} s Slack calls and the store write-locked",
    }[result["scenario"]]
    print(
        f"\n{result['events']} signed app_mentions at {RATE_PER_S}/s {condition} "
        f"({result['queued_replies_when_sending_stopped']} replies still queued when sending stopped):"
        f"\n  mention ack  p50 {m['p50']:.1f} ms  p99 {m['p99']:.1f} ms  max {m['max']:.1f} ms"
        f"\n  baseline     p50 {b['p50']:.1f} ms  p99 {b['p99']:.1f} ms  (url_verification)"
        f"\n  p99 ratio {m['p99'] / max(b['p99'], 0.001):.1f}x"
        f"\n  {result['retries_sent']} retries sent; posts "
        f"{'not waited for' if result['posts'] is None else result['posts']} for {result['events']} events"
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ack_latency_and_one_post_per_event(scenario: str) -> None:
    result = run(scenario=scenario)
    report(result)
    if result["posts"] is not None:
        assert result["posts"] == result["events"], "every event answered exactly once"
    assert result["mention_ack_ms"]["p99"] < P99_TARGET_MS


if __name__ == "__main__":
    for name in SCENARIOS:
        outcome = run(scenario=name)
        report(outcome)
        print(json.dumps(outcome, indent=2))
