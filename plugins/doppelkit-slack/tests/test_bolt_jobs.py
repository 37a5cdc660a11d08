"""Durable reply jobs: a bot process killed with SIGKILL mid-reply, and the next one on the same
home finishing every unfinished reply exactly once — no part twice, none missing.

The bot runs in a real process (:mod:`doppelkit_slack.testing.bot_process`) against FakeSlack
in this one; signed events go in over HTTP.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bolt_support import (
    BOT_USER,
    CHANNEL,
    ROOT_TS,
    SECRET,
    TEAM,
    TOKEN,
    database,
    health,
    replies,
    start_bot,
    stop_bot,
    store_event_message,
    wait_until,
)

from doppelkit.testing.fakes import EchoEngine, EngineCall
from doppelkit_slack.testing import FakeSlack
from doppelkit_slack.testing.events import EventSender, app_mention
from doppelkit_slack.testing.fake_slack import Call

PARTS = ["part one", "part two", "part three"]


class BotProcess:
    def __init__(self, home: Path, slack: FakeSlack, log: Path, **options: Any) -> None:
        args = [sys.executable, "-m", "doppelkit_slack.testing.bot_process", "--home", str(home)]
        args += ["--api-url", slack.url]
        for name, value in options.items():
            args += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
        self.log = log
        env = {**os.environ, "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "OMP_NUM_THREADS": "1"}
        with log.open("w") as sink:
            self.process = subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT)
        found = wait_until(lambda: "listening on" in log.read_text() or self.process.poll() is not None, 60)
        text = log.read_text()
        assert found and self.process.poll() is None, text[-3000:]
        url = re.search(r"listening on (\S+)", text).group(1)  # type: ignore[union-attr]
        self.sender = EventSender(url, SECRET)

    def mention(self, text: str = "how are you?", **kwargs: Any) -> int:
        event = app_mention(f"<@{BOT_USER}> {text}", user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
        return self.sender.send_event(event, team=TEAM, **kwargs).status

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def processes() -> Iterator[list[BotProcess]]:
    started: list[BotProcess] = []
    yield started
    for bot in started:
        bot.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_config(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The store both bot processes share: SQLite under home, or a private PostgreSQL schema."""
    with database(request.param) as url:
        yield {"store_url": url} if url else {}


def start(
    processes: list[BotProcess], tmp_path: Path, slack: FakeSlack, config: dict[str, Any], **options: Any
) -> BotProcess:
    if config:
        options["config"] = config
    bot = BotProcess(tmp_path / "home", slack, tmp_path / f"bot{len(processes)}.log", **options)
    processes.append(bot)
    return bot


def texts_when_settled(slack: FakeSlack, n: int, timeout: float = 30.0) -> list[str]:
    """The posts' texts once ``n`` are there and no more arrive for a second."""
    wait_until(lambda: len(slack.posts) >= n, timeout)
    seen = -1
    while seen != len(slack.posts):
        seen = len(slack.posts)
        time.sleep(1.0)
    return [p.text for p in slack.posts]


def _mention_stored(slack: FakeSlack) -> None:
    event = app_mention(f"<@{BOT_USER}> how are you?", user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
    store_event_message(slack, event)


def test_killed_while_generating_the_next_bot_answers_once(
    tmp_path: Path, slack: FakeSlack, processes: list[BotProcess], store_config: dict[str, Any]
) -> None:
    _mention_stored(slack)
    first = start(processes, tmp_path, slack, store_config, delay=60)
    assert first.mention(event_id="EvKILL1") == 200
    # The thread is read just before the engine starts generating.
    assert wait_until(lambda: slack.count("conversations.replies") >= 1, 20)
    time.sleep(0.3)
    first.kill()
    assert slack.posts == []

    second = start(processes, tmp_path, slack, store_config)
    assert second.mention(event_id="EvKILL1", retry_num=1) == 200  # Slack's retry: no second job
    [text] = texts_when_settled(slack, 1)
    assert text == f"Ann says: &lt;@{BOT_USER}&gt; how are you?"


def test_killed_while_waiting_on_a_429_the_rest_is_posted_once(
    tmp_path: Path, slack: FakeSlack, processes: list[BotProcess], store_config: dict[str, Any]
) -> None:
    _mention_stored(slack)
    slack.inject_fault("chat.postMessage", "ratelimited", nth=2, retry_after=40)
    first = start(processes, tmp_path, slack, store_config, messages=PARTS)
    assert first.mention() == 200
    assert wait_until(lambda: slack.count("chat.postMessage") >= 2, 20)  # part one, then a 429
    time.sleep(0.3)
    first.kill()
    assert [p.text for p in slack.posts] == PARTS[:1]

    start(processes, tmp_path, slack, store_config, messages=["a different answer"])
    assert texts_when_settled(slack, 3) == PARTS  # the saved reply is finished, not regenerated


def test_killed_after_slack_took_a_part_but_before_it_was_recorded(
    tmp_path: Path, slack: FakeSlack, processes: list[BotProcess], store_config: dict[str, Any]
) -> None:
    _mention_stored(slack)
    first = start(processes, tmp_path, slack, store_config, messages=PARTS)

    def kill_after_the_second_post(call: Call) -> None:
        if call.method == "chat.postMessage" and call.ok and len(slack.posts) == 2:
            slack.observer = None
            os.kill(first.process.pid, signal.SIGKILL)  # before the bot hears Slack's answer

    slack.observer = kill_after_the_second_post
    assert first.mention() == 200
    assert wait_until(lambda: first.process.poll() is not None, 20)
    assert [p.text for p in slack.posts] == PARTS[:2]

    start(processes, tmp_path, slack, store_config, messages=PARTS)
    assert texts_when_settled(slack, 3) == PARTS
    assert [p.params["metadata"]["event_payload"]["part"] for p in slack.posts] == [0, 1, 2]


# --- a write-locked store ----------------------------------------------------------------------


def _health(url: str) -> tuple[int, dict[str, Any]]:
    return health(url + "/healthz")


def test_a_write_locked_store_neither_stalls_acks_nor_loses_the_mention(
    tmp_path: Path, slack: FakeSlack
) -> None:

    bot = start_bot(tmp_path, slack, EchoEngine(versions={(TEAM, "U_ANN"): "v1"}))
    locker = sqlite3.connect(str(bot.runtime.parts.home.state / "doppelkit.db"), isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        started = time.perf_counter()
        assert bot.mention(event_id="EvLOCKED").status == 200
        assert bot.mention(event_id="EvLOCKED", retry_num=1).status == 200  # Slack retries meanwhile
        assert time.perf_counter() - started < 1.0, "acks waited for the locked store"
        assert wait_until(lambda: _health(bot.server.url)[1]["store"].startswith("slow"), 5)
        assert _health(bot.server.url)[0] == 200, "a write waiting a moment is not yet an outage"
        jobs = bot.runtime.parts.replier.jobs
        jobs.settings = dataclasses.replace(jobs.settings, degraded_after_s=0.3)
        assert wait_until(lambda: _health(bot.server.url)[0] == 503, 5)
        status, health = _health(bot.server.url)
        assert status == 503 and health["status"] == "degraded" and health["unrecorded"] == 1
        assert slack.posts == []
        locker.execute("ROLLBACK")  # the lock goes away: the job is recorded, then answered once
        [post] = replies(bot, n=1)
        assert post.text.endswith("how are you?")
        assert _health(bot.server.url)[0] == 200
    finally:
        locker.close()
        stop_bot(bot)


def test_a_stop_records_the_mentions_held_in_memory_first(
    tmp_path: Path, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mention acked while the store failed waits in memory; stopping the bot (a SIGTERM, a
    deploy) used to drop it. Now the stop records it first, and the next bot answers it."""
    from sqlalchemy.exc import OperationalError

    engine = EchoEngine(versions={(TEAM, "U_ANN"): "v1"})
    bot = start_bot(tmp_path, slack, engine)
    store = bot.runtime.parts.store
    add_job, back = store.add_job, threading.Event()

    def restarting(values: dict[str, Any], **limits: Any) -> str | None:
        if not back.is_set():
            raise OperationalError("INSERT", {}, Exception("the database system is starting up"))
        return add_job(values, **limits)

    monkeypatch.setattr(store, "add_job", restarting)
    assert bot.mention(event_id="EvHELD").status == 200
    assert wait_until(lambda: _health(bot.server.url)[1]["counts"]["store_errors"] >= 1, 5)
    assert _health(bot.server.url)[1]["unrecorded"] == 1
    threading.Timer(0.5, back.set).start()  # the database is back while the bot stops
    stop_bot(bot)
    assert slack.posts == [], "the stopping bot took no new job"
    again = start_bot(tmp_path, slack, engine)
    try:
        [post] = replies(again, n=1)
        assert post.thread_ts == ROOT_TS and post.text.endswith("how are you?")
    finally:
        stop_bot(again)


class StoppingEngine(EchoEngine):
    """An engine whose reply ends when the engine is closed, as vLLM's requests do."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.closed = threading.Event()

    def reply(self, persona: Any, thread: Any, *, bot_user_id: str | None = None) -> list[str]:
        with self._lock:
            self.calls.append(EngineCall(persona, thread, bot_user_id))
        self.closed.wait(30)
        raise RuntimeError("the engine was closed while this request was running")

    def close(self) -> None:
        self.closed.set()


def test_a_reply_cut_off_by_the_stop_is_left_to_the_next_bot_not_apologised_for(
    tmp_path: Path, slack: FakeSlack
) -> None:
    """The stop's grace ran out while a reply was being generated, then the engine was closed
    under it: that used to post "could not come up with a reply" and finish the job."""
    stopping = StoppingEngine(versions={(TEAM, "U_ANN"): "v1"})
    bot = start_bot(tmp_path, slack, stopping, reply_lease_s=1)
    assert bot.mention(event_id="EvCUT").status == 200
    assert wait_until(lambda: len(stopping.calls) == 1, 10)
    bot.server.stop()
    bot.runtime.parts.replier.jobs.close(timeout=0.2)  # the grace runs out: the worker is still busy
    stopping.close()  # then serve closes the engine
    time.sleep(0.5)
    assert slack.posts == [], "no apology for a reply the next bot can still give"
    bot.runtime.close()
    again = start_bot(tmp_path, slack, EchoEngine(versions={(TEAM, "U_ANN"): "v1"}), reply_lease_s=1)
    try:
        [post] = replies(again, n=1)  # once the stopped bot's lease ran out
        assert post.thread_ts == ROOT_TS and post.text.endswith("how are you?")
    finally:
        stop_bot(again)


# --- queue limits ----------------------------------------------------------------------------------


def _mention_at(bot: Any, i: int) -> None:
    assert bot.mention(f"question {i}", ts=f"1700000000.00010{i}").status == 200
    if i == 0:  # the only worker is busy with the first before the next arrives (however loaded)
        assert wait_until(lambda: len(bot.engine.calls) == 1, 10)
    time.sleep(0.2)  # and each later one is recorded before the next


def test_a_full_queue_answers_busy_at_once(tmp_path: Path, slack: FakeSlack) -> None:
    engine = EchoEngine(versions={(TEAM, "U_ANN"): "v1"}, delay=1.5)
    bot = start_bot(tmp_path, slack, engine, reply_workers=1, reply_queue_max=1)
    try:
        for i in range(3):  # one being generated, one waiting, one too many
            _mention_at(bot, i)
        assert wait_until(lambda: len(slack.posts) == 1, 1.0), "the busy notice waits for nobody"
        [busy] = slack.posts
        assert busy.thread_ts == "1700000000.000102" and "answering a lot of messages" in busy.text
        health = _health(bot.server.url)[1]
        assert health["counts"]["busy"] == 1 and health["queue_max"] == 1
        posts = replies(bot, n=3)
        assert sorted(p.text for p in posts[1:]) == [
            f"Ann says: &lt;@{BOT_USER}&gt; question 0",
            f"Ann says: &lt;@{BOT_USER}&gt; question 1",
        ]
    finally:
        stop_bot(bot)


def test_a_mention_that_waited_too_long_gets_an_apology_not_a_stale_answer(
    tmp_path: Path, slack: FakeSlack
) -> None:
    engine = EchoEngine(versions={(TEAM, "U_ANN"): "v1"}, delay=1.0)
    bot = start_bot(tmp_path, slack, engine, reply_workers=1, reply_max_age_s=0.5)
    try:
        _mention_at(bot, 0)
        _mention_at(bot, 1)  # waits ~1 s behind the first: past the 0.5 s limit
        first, late = replies(bot, n=2)
        assert first.text.endswith("question 0")
        assert late.thread_ts == "1700000000.000101" and "took too long" in late.text
        assert late.username == "doppelkit"
        assert len(engine.calls) == 1, "no generation for a reply nobody waits for any more"
        assert _health(bot.server.url)[1]["counts"]["expired"] == 1
    finally:
        stop_bot(bot)


def test_the_reply_limit_holds_across_bot_processes(
    processes: list[BotProcess], tmp_path: Path, slack: FakeSlack, store_config: dict[str, Any]
) -> None:
    """Two bots on one store (as several Modal containers or replicas are): the workspace gets
    its replies per minute once, not once per process."""
    bots = [start(processes, tmp_path, slack, {**store_config, "replies_per_minute": 2}) for _ in range(2)]
    for i in range(6):
        event = app_mention(
            f"<@{BOT_USER}> hi {i}", user="U_BOB", channel=CHANNEL, ts=f"17000000{i:02d}.000100"
        )
        store_event_message(slack, event)
        assert bots[i % 2].sender.send_event(event, team=TEAM).status == 200
    texts = texts_when_settled(slack, 3)
    assert len(texts) == 3, texts
    assert sum("more than 2 replies in the last minute" in t for t in texts) == 1, texts


# --- failures that used to be silent ------------------------------------------------------------------


def test_a_full_disk_is_reported_and_the_job_recorded_once_it_passes(
    tmp_path: Path, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    bot = start_bot(tmp_path, slack, EchoEngine(versions={(TEAM, "U_ANN"): "v1"}))
    store = bot.runtime.parts.store
    add_job = store.add_job
    failing = [True]

    def full_disk(values: dict[str, Any], **limits: Any) -> str | None:
        if failing[0]:
            raise OperationalError("INSERT", {}, Exception("database or disk is full"))
        return add_job(values, **limits)

    monkeypatch.setattr(store, "add_job", full_disk)
    try:
        assert bot.mention().status == 200
        assert wait_until(lambda: _health(bot.server.url)[0] == 503, 5)
        health = _health(bot.server.url)[1]
        assert "database or disk is full" in health["store"] and health["unrecorded"] == 1
        assert health["counts"]["store_errors"] >= 1
        failing[0] = False  # space again
        [post] = replies(bot, n=1)
        assert post.text.endswith("how are you?")
        assert _health(bot.server.url)[0] == 200
    finally:
        stop_bot(bot)


def test_a_post_slack_refuses_for_good_is_logged_with_its_code_and_counted(
    bot_and_log: tuple[Any, pytest.LogCaptureFixture],
) -> None:
    bot, caplog = bot_and_log
    bot.slack.inject_fault("chat.postMessage", "error", error="channel_not_found", times=None)
    assert bot.mention().status == 200
    assert wait_until(lambda: _health(bot.server.url)[1]["counts"].get("failed") == 1, 5)
    bot.runtime.parts.replier.wait_idle(5)
    assert bot.slack.count("chat.postMessage") == 1  # no notice where none can be posted
    assert any("Slack error channel_not_found" in r.getMessage() for r in caplog.records)
    assert _health(bot.server.url)[1]["last_failures"][0]["error"] == "channel_not_found"
    job = bot.runtime.parts.store.get_job(f"{TEAM}:{CHANNEL}:{ROOT_TS}")
    assert job is not None and job.state == "failed" and "channel_not_found" in (job.error or "")


@pytest.fixture
def bot_and_log(
    tmp_path: Path, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[Any, pytest.LogCaptureFixture]]:
    made = start_bot(tmp_path, slack, EchoEngine(versions={(TEAM, "U_ANN"): "v1"}))
    yield made, caplog
    stop_bot(made)


def test_a_mention_held_in_memory_past_the_age_limit_gets_the_apology(
    tmp_path: Path, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    bot = start_bot(tmp_path, slack, EchoEngine(versions={(TEAM, "U_ANN"): "v1"}), reply_max_age_s=0.5)
    store = bot.runtime.parts.store
    add_job, until = store.add_job, time.monotonic() + 1.0

    def unavailable_for_a_second(values: dict[str, Any], **limits: Any) -> str | None:
        if time.monotonic() < until:
            raise OperationalError("INSERT", {}, Exception("database or disk is full"))
        return add_job(values, **limits)

    monkeypatch.setattr(store, "add_job", unavailable_for_a_second)
    try:
        assert bot.mention().status == 200  # the age counts from here, not from the late insert
        [post] = replies(bot, n=1)
        assert "took too long" in post.text and bot.engine.calls == []
    finally:
        stop_bot(bot)


def test_a_job_whose_worker_could_not_record_its_progress_is_retried(
    tmp_path: Path, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    bot = start_bot(tmp_path, slack, EchoEngine(versions={(TEAM, "U_ANN"): "v1"}), reply_lease_s=1)
    store = bot.runtime.parts.store
    update_job, failures = store.update_job, [2]  # saving the reply, then recording the failure

    def flaky(key: str, owner: str, **values: Any) -> bool:
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("UPDATE", {}, Exception("disk I/O error"))
        return update_job(key, owner, **values)

    monkeypatch.setattr(store, "update_job", flaky)
    try:
        assert bot.mention().status == 200
        assert wait_until(lambda: len(slack.posts) == 1, 10), "the job stayed stuck under a renewed lease"
        time.sleep(0.5)
        [post] = slack.posts
        assert post.text.endswith("how are you?")
        job = store.get_job(f"{TEAM}:{CHANNEL}:{ROOT_TS}")
        assert job is not None and job.state == "done" and job.attempts == 2
    finally:
        stop_bot(bot)
