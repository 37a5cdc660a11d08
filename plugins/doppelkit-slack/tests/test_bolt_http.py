"""End to end: the real Bolt app over HTTP (uvicorn on port 0) against a fake Web API.

Signed events go in through :class:`EventSender`; what the bot posts is read back from the
fake. The Web API is :class:`~doppelkit_slack.testing.FakeSlack`; the engine is a deterministic
:class:`EchoEngine` (no model).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from bolt_support import (
    BOT_USER,
    CHANNEL,
    DM,
    ROOT_TS,
    TEAM,
    Bot,
    health,
    replies,
    start_bot,
    stop_bot,
    wait_until,
)

from doppelkit.testing.contracts import FrontendContract
from doppelkit.testing.fakes import EchoEngine
from doppelkit.testing.helpers import make_context
from doppelkit_slack.bolt import BoltFrontend
from doppelkit_slack.bolt.config import BoltConfig
from doppelkit_slack.testing import FakeSlack
from doppelkit_slack.testing.bolt import wait_idle
from doppelkit_slack.testing.events import app_mention, channel_message, event_envelope


def test_a_signed_mention_gets_exactly_one_threaded_reply_from_the_persona(bot: Bot) -> None:
    response = bot.mention()
    assert response.status == 200
    [post] = replies(bot)
    assert post.channel == CHANNEL and post.thread_ts == ROOT_TS
    assert post.username == "Ann-bot"
    assert post.text.startswith("Ann says:")
    # The echoed mention is neutralised: no raw <@…> sequence can ping anyone.
    assert "<@" not in post.text and "&lt;@" in post.text
    [call] = bot.engine.calls
    assert call.persona.id == "U_ANN" and call.bot_user_id == BOT_USER
    assert [m.ts for m in call.thread.messages] == [ROOT_TS]


@pytest.mark.parametrize("retries", [1, 2, 3])
def test_slack_retries_never_produce_a_second_post(bot: Bot, retries: int) -> None:
    assert bot.mention(event_id="EvRETRY").status == 200
    for attempt in range(1, retries + 1):
        assert bot.mention(event_id="EvRETRY", retry_num=attempt).status == 200
    assert len(replies(bot)) == 1
    assert len(bot.engine.calls) == 1


def test_the_same_event_three_times_concurrently_gets_one_post(bot: Bot) -> None:
    statuses: list[int] = []
    barrier = threading.Barrier(3)

    def deliver(attempt: int) -> None:
        barrier.wait()
        statuses.append(bot.mention(event_id="EvTRIPLE", retry_num=attempt or None).status)

    workers = [threading.Thread(target=deliver, args=(i,)) for i in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert statuses == [200, 200, 200]
    assert len(replies(bot)) == 1


def test_app_mention_and_message_double_delivery_gets_one_post(bot: Bot) -> None:
    text = f"<@{BOT_USER}> hi"
    mention = app_mention(text, user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
    message = channel_message(text, user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
    assert bot.send(message).status == 200
    assert bot.send(mention).status == 200
    assert len(replies(bot)) == 1


def test_a_direct_message_gets_a_reply_and_plain_channel_chatter_does_not(bot: Bot) -> None:
    chatter = channel_message(
        "just chatting", user="U_BOB", channel=CHANNEL, ts="1700000001.000100", team=TEAM
    )
    from_bot = app_mention(
        f"<@{BOT_USER}> loop?", user="U_X", channel=CHANNEL, ts="1700000002.000100", team=TEAM
    )
    from_bot["bot_id"] = "BOTHER"
    dm = channel_message("hello you", user="U_BOB", channel=DM, ts="1700000003.000100", channel_type="im")
    for event in (chatter, from_bot, dm):
        assert bot.send(event).status == 200
    [post] = replies(bot)
    assert post.channel == DM and post.text == "Ann says: hello you"


def test_slackbot_is_ignored_like_other_bots(bot: Bot) -> None:
    # A /remind fires as Slackbot posting the reminder text, which may mention the bot.
    reminder = app_mention(
        f"Reminder: <@{BOT_USER}> stand-up", user="USLACKBOT", channel=CHANNEL, ts=ROOT_TS, team=TEAM
    )
    dm = channel_message(
        "Reminder: hi", user="USLACKBOT", channel=DM, ts="1700000003.000100", channel_type="im"
    )
    for event in (reminder, dm):
        assert bot.send(event).status == 200
    assert replies(bot, 0) == [] and bot.engine.calls == []


@pytest.mark.parametrize(
    "changes",
    [
        {"user": "../../etc"},
        {"channel": "C0001/../../x"},
        {"team": "T" * 300},
        {"ts": "../1"},
        {"thread_ts": "1700000000.000100/.."},
    ],
)
def test_ids_that_are_not_slack_ids_get_no_job(bot: Bot, changes: dict[str, str]) -> None:
    event = app_mention(f"<@{BOT_USER}> hi", user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
    event.update(changes)
    assert bot.sender.send_event(event, team=changes.get("team", TEAM)).status == 200
    assert replies(bot, 0) == [] and bot.engine.calls == []
    assert bot.runtime.parts.store.unfinished_jobs() == 0


def test_acks_do_not_wait_for_a_slow_engine(tmp_path: Path, slack: FakeSlack) -> None:
    slow = start_bot(tmp_path, slack, EchoEngine(versions={(TEAM, "U_ANN"): "v1"}, delay=1.5))
    try:
        slow.mention(ts="1700000000.000001")  # warms Bolt's one-time auth.test
        started = time.perf_counter()
        for i in range(5):
            assert slow.mention(ts=f"1700000000.00010{i}").status == 200
        assert time.perf_counter() - started < 1.0, "five acks took longer than one generation"
    finally:
        slow.server.stop()
        slow.runtime.close()


def test_no_ack_waits_for_slack_not_even_the_first(tmp_path: Path, slack: FakeSlack) -> None:
    bot = start_bot(tmp_path, slack, EchoEngine(versions={(TEAM, "U_ANN"): "v1"}))
    try:
        assert slack.count("auth.test") == 1  # verified once, at start-up
        slack.latency = 2.0  # Slack is slow from now on (every call takes 2 s)
        started = time.perf_counter()
        assert bot.mention().status == 200  # the first request after the start
        assert time.perf_counter() - started < 1.0
        slack.inject_fault("auth.test", "error", error="invalid_auth", times=None)
        assert bot.mention("again", ts="1700000001.000100").status == 200
        assert slack.count("auth.test") == 1
        slack.latency = 0.0
        assert len(replies(bot, n=2)) == 2  # neither was dropped with "please reinstall"
    finally:
        stop_bot(bot)


def test_start_up_retries_auth_test_and_refuses_a_bad_token(tmp_path: Path, slack: FakeSlack) -> None:
    from doppelkit.errors import UserError

    slack.inject_fault("auth.test", status=503, times=4)  # two tries of the client's 2 retries each
    bot = start_bot(tmp_path, slack, EchoEngine(), api_retry_backoff=0.01)
    stop_bot(bot)
    assert slack.count("auth.test") == 5
    slack.inject_fault("auth.test", "error", error="invalid_auth", nth=6)
    with pytest.raises(UserError, match="Slack refused SLACK_BOT_TOKEN on auth.test \\(invalid_auth\\)"):
        start_bot(tmp_path, slack, EchoEngine())


# --- the request guard --------------------------------------------------------------------------


def _mention_body() -> bytes:
    event = app_mention(f"<@{BOT_USER}> hi", user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
    return json.dumps(event_envelope(event, team=TEAM)).encode()


@pytest.mark.parametrize(
    ("spoil", "status"),
    [
        ({"signature": "v0=" + "0" * 64}, 401),  # forged
        ({"signature": "garbage"}, 401),  # malformed
        ({"signed": False}, 401),  # missing
        ({"skew": 301}, 401),  # from the future
        ({"skew": -301}, 401),  # stale
        ({"timestamp": "soon", "signature": "v0=abc"}, 400),  # non-numeric timestamp
        ({"content_type": "text/plain"}, 415),
        ({"method": "GET"}, 405),
    ],
)
def test_bad_requests_get_4xx_and_no_reply(bot: Bot, spoil: dict[str, Any], status: int) -> None:
    response = bot.sender.post(_mention_body(), **spoil)
    assert response.status == status
    time.sleep(0.1)
    assert bot.slack.posts == [] and bot.engine.calls == []


def test_just_inside_the_clock_window_is_accepted(bot: Bot) -> None:
    assert bot.sender.post(_mention_body(), skew=-290).status == 200


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2, 3]", b"\xff\xfe\x00", b""],
)
def test_signed_garbage_bodies_get_400(bot: Bot, body: bytes) -> None:
    assert bot.sender.post(body).status == 400


def _malformed(**changes: Any) -> bytes:
    envelope = json.loads(_mention_body())
    event = changes.pop("event_changes", None)
    if event:
        envelope["event"].update(event)
    envelope.update(changes)
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(
    "body",
    [
        _malformed(event=[1]),
        _malformed(event="x"),
        _malformed(event=None),
        _malformed(event_changes={"user": 5}),
        _malformed(event_changes={"channel": [1]}),
        _malformed(event_changes={"ts": 1.5}),
        _malformed(event_changes={"team": {"id": 7}}),
        _malformed(team_id=5),
        _malformed(authorizations="x"),
        _malformed(authorizations=[{"team_id": 5}]),
        _malformed(enterprise=3),
        json.dumps({"type": 7}).encode(),
    ],
)
def test_signed_but_malformed_envelopes_get_400_not_500(bot: Bot, body: bytes) -> None:
    response = bot.sender.post(body)
    assert response.status == 400 and "malformed envelope" in response.text
    time.sleep(0.1)
    assert bot.slack.posts == [] and bot.engine.calls == []


@pytest.mark.parametrize(
    "payload",
    [{"type": "block_actions", "user": 5}, {"type": "block_actions", "user": {"id": ["U1"]}}, {"type": 3}],
)
def test_signed_but_malformed_interactions_get_400(bot: Bot, payload: dict[str, Any]) -> None:
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert bot.sender.post(body, content_type="application/x-www-form-urlencoded").status == 400


def test_real_envelope_shapes_still_pass(bot: Bot) -> None:
    # Objects where Slack sends them (user_change's user, an interaction's team) and nulls.
    body = _malformed(enterprise_id=None, event_changes={"team": "T0001", "user_team": "T0001"})
    assert bot.sender.post(body).status == 200
    user_change = json.dumps(
        event_envelope({"type": "user_change", "user": {"id": "U_BOB", "name": "bob"}}, team=TEAM)
    ).encode()
    assert bot.sender.post(user_change).status == 200


def test_signed_garbage_form_gets_400(bot: Bot) -> None:
    assert bot.sender.post(b"payload=%7Bnope", content_type="application/x-www-form-urlencoded").status == 400


def test_oversized_bodies_get_413_before_being_read_in_full(bot: Bot) -> None:
    event = app_mention("x" * 1_100_000, user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=TEAM)
    assert bot.sender.post(json.dumps(event_envelope(event, team=TEAM)).encode()).status == 413


def test_url_verification_is_answered(bot: Bot) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"}).encode()
    response = bot.sender.post(body)
    assert response.status == 200 and "c-123" in response.text


def test_unknown_paths_and_health(bot: Bot) -> None:
    import urllib.error
    import urllib.request

    with urllib.request.urlopen(bot.server.url + "/healthz") as ok:
        assert ok.status == 200
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(bot.server.url + "/nope")
    assert missing.value.code == 404


# --- no persona, long threads, API faults -----------------------------------------------------------


def test_a_mention_with_no_trained_persona_gets_a_helpful_reply(tmp_path: Path, slack: FakeSlack) -> None:
    untrained = start_bot(tmp_path, slack, EchoEngine(), persona=None)
    try:
        untrained.mention()
        [post] = replies(untrained)
        assert "/doppel train" in post.text and post.thread_ts == ROOT_TS
        assert untrained.engine.calls == []
    finally:
        untrained.server.stop()
        untrained.runtime.close()


def test_the_active_persona_without_a_model_says_so(tmp_path: Path, slack: FakeSlack) -> None:
    untrained = start_bot(tmp_path, slack, EchoEngine(), persona="U_ANN")
    try:
        untrained.mention()
        [post] = replies(untrained)
        assert "no trained model" in post.text and "Ann" in post.text
        assert "<@" not in post.params["text"], "a notice must not ping the person"
    finally:
        untrained.server.stop()
        untrained.runtime.close()


def test_a_10000_character_thread_is_cut_to_the_formatters_context_budget(
    tmp_path: Path, slack: FakeSlack
) -> None:
    from doppelkit.builtins.formatters.chat import ChatFormatter

    formatter = ChatFormatter(ChatFormatter.Config(), make_context(tmp_path))
    prompts: list[list[Any]] = []

    class PromptEngine(EchoEngine):
        def reply(self, persona: Any, thread: Any, *, bot_user_id: str | None = None) -> list[str]:
            prompts.append(formatter.conversation(thread, persona, bot_user_id=bot_user_id))  # type: ignore[call-arg]
            return super().reply(persona, thread, bot_user_id=bot_user_id)

    bot = start_bot(tmp_path, slack, PromptEngine(versions={(TEAM, "U_ANN"): "v1"}))
    try:
        thread = [
            {
                "ts": f"1700000000.{i:06d}",
                "user": "U_BOB" if i % 2 else "U_ANN",
                "text": f"message {i} " + "y" * 240,
            }
            for i in range(1, 41)
        ]
        last_ts = thread[-1]["ts"]
        thread[-1]["text"] = f"<@{BOT_USER}> what do you think?"
        for message in thread:
            slack.workspace.add_message(
                CHANNEL, {**message, **({"thread_ts": thread[0]["ts"]} if message is not thread[0] else {})}
            )
        assert sum(len(m["text"]) for m in thread) > 9_000
        event = app_mention(
            thread[-1]["text"],
            user="U_BOB",
            channel=CHANNEL,
            ts=last_ts,
            thread_ts=thread[0]["ts"],
            team=TEAM,
        )
        bot.sender.send_event(event, team=TEAM)
        [post] = replies(bot)
        assert post.thread_ts == thread[0]["ts"]
        [prompt] = prompts
        budget = formatter.config.max_context_chars
        context_chars = sum(len(m.content) for m in prompt if m.role != "system")
        assert context_chars <= budget + 200, (context_chars, budget)
        assert "what do you think?" in prompt[-1].content
        assert len(bot.engine.calls[0].thread.messages) == 40  # the whole thread reached the engine
    finally:
        bot.server.stop()
        bot.runtime.close()


def test_rate_limits_while_replying_are_retried(bot: Bot) -> None:
    bot.slack.inject_fault("chat.postMessage", "ratelimited", retry_after=0)
    bot.slack.inject_fault("chat.postMessage", status=503, nth=2)
    bot.mention()
    [post] = replies(bot)
    assert post.username == "Ann-bot"
    assert bot.slack.count("chat.postMessage") == 3


def test_persistent_server_errors_give_up_visibly_and_the_bot_keeps_working(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    bot.slack.inject_fault("chat.postMessage", status=500, times=3)  # first try + 2 retries
    bot.mention()
    assert wait_until(lambda: bot.slack.count("chat.postMessage") == 4)
    wait_idle(bot.runtime)
    # Not silent: logged with Slack's error code, counted on /healthz, and the person is told.
    [notice] = bot.slack.posts
    assert notice.username == "doppelkit" and "internal_error" in notice.text
    assert any("Slack error internal_error" in r.getMessage() for r in caplog.records)
    health = _health(bot)
    assert health["counts"]["failed"] == 1
    assert health["last_failures"][0]["error"] == "internal_error"
    bot.mention("still there?", ts="1700000009.000100")
    post = replies(bot, n=2)[-1]
    assert post.text.endswith("still there?")


def _health(bot: Bot) -> dict[str, Any]:
    status, report = health(bot.server.url + "/healthz")
    return dict(report, http=status)


def test_long_and_multi_message_replies_are_split_and_posted_in_order(
    tmp_path: Path, slack: FakeSlack
) -> None:
    long = " ".join(["word"] * 2500)  # ~12,500 characters
    engine = EchoEngine(versions={(TEAM, "U_ANN"): "v1"}, messages=["first", long, "last <!channel> @here"])
    bot = start_bot(tmp_path, slack, engine, max_message_chars=4000)
    try:
        bot.mention()
        posts = replies(bot, n=6)
        texts = [p.text for p in posts]
        assert texts[0] == "first" and texts[-1].startswith("last")
        assert all(len(t) <= 4000 for t in texts)
        assert " ".join(texts[1:-1]).split() == long.split()
        assert "<!channel>" not in texts[-1] and "&lt;!channel&gt;" in texts[-1]
        assert "@here" not in texts[-1]  # a word joiner keeps it from pinging
        assert {p.thread_ts for p in posts} == {ROOT_TS}
    finally:
        bot.server.stop()
        bot.runtime.close()


def test_a_dropped_connection_while_replying_is_retried(bot: Bot) -> None:
    # slack_sdk's own connection-error retry must survive next to the 429/5xx handlers.
    bot.slack.inject_fault("chat.postMessage", "drop")
    bot.mention()
    [post] = replies(bot)
    assert post.username == "Ann-bot" and bot.slack.count("chat.postMessage") == 2


def test_a_sub_second_api_timeout_is_kept(tmp_path: Path, slack: FakeSlack) -> None:
    bot = start_bot(tmp_path, slack, EchoEngine(), api_timeout=0.5)
    try:
        assert bot.runtime.client.timeout == 0.5  # int(0.5) == 0 would mean no timeout at all
    finally:
        stop_bot(bot)


def test_stopping_the_bot_stops_its_worker_threads(tmp_path: Path, slack: FakeSlack) -> None:
    before = set(threading.enumerate())
    bot = start_bot(tmp_path, slack, EchoEngine(versions={(TEAM, "U_ANN"): "v1"}))
    bot.mention()
    replies(bot)
    stop_bot(bot)

    def leftovers() -> list[str]:
        return [t.name for t in set(threading.enumerate()) - before if t.is_alive()]

    assert wait_until(lambda: not leftovers()), leftovers()


def _mention_in_thread(bot: Bot, text: str) -> str:
    ts = bot.slack.workspace.next_ts()
    event = app_mention(
        f"<@{BOT_USER}> {text}", user="U_BOB", channel=CHANNEL, ts=ts, thread_ts=ROOT_TS, team=TEAM
    )
    bot.send(event)
    return ts


def test_only_the_personas_own_replies_become_its_turns(bot: Bot) -> None:
    bot.mention("first?", ts=ROOT_TS)
    [ann_reply] = replies(bot)
    assert ann_reply.params["metadata"] == {
        "event_type": "doppelkit_reply",
        "event_payload": {"persona": "U_ANN", "job": f"{TEAM}:{CHANNEL}:{ROOT_TS}", "part": 0},
    }
    bot.engine.fail_with = RuntimeError("the model is down")
    _mention_in_thread(bot, "second?")
    notice = replies(bot, n=2)[-1]
    assert notice.username == "doppelkit" and notice.params["metadata"]["event_type"] == "doppelkit_notice"
    assert "persona" not in notice.params["metadata"]["event_payload"]

    bot.engine.fail_with = None
    bot.engine.versions[(TEAM, "U_BOB")] = "v1"
    bot.runtime.parts.store.set_active(TEAM, "U_BOB")  # /doppel switch Bob
    third = _mention_in_thread(bot, "third?")
    replies(bot, n=3)
    call = bot.engine.calls[-1]
    assert call.persona.id == "U_BOB"
    seen = [(m.ts, m.user, m.is_bot) for m in call.thread.messages]
    assert (notice.ts, "U_BOB", False) not in seen and notice.ts not in [ts for ts, _, _ in seen]
    assert (ann_reply.ts, "U_ANN", False) in seen, "Ann's reply is Ann speaking, not Bob"
    assert seen[-1][0] == third


class TestBoltFrontendContract(FrontendContract):
    @pytest.fixture
    def frontend(self, tmp_path: Path) -> BoltFrontend:
        return BoltFrontend(BoltConfig(), make_context(tmp_path))
