"""FakeSlack behaves like the Slack Web API where doppelkit depends on it: shapes, paging, caps,
rate limits, faults, tokens, scopes, membership, posting and its call records."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_slack_exports import ROOT, ROOT2, fake_export
from slack_export_builders import USERS
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler

from doppelkit_slack.testing import FakeSlack


@pytest.fixture
def export(tmp_path: Path) -> Path:
    return fake_export(tmp_path / "export")


@pytest.fixture
def slack(export: Path) -> Iterator[FakeSlack]:
    with FakeSlack.from_export(export) as server:
        yield server


def client(slack: FakeSlack, **options: Any) -> WebClient:
    options.setdefault("retry_handlers", [])
    return WebClient(token=slack.token, base_url=slack.url, **options)


def raw_call(
    slack: FakeSlack, method: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client: the status, headers and body exactly as served."""
    url = urllib.parse.urlsplit(slack.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        connection.request("POST", url.path + method, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def all_pages(call: Any, key: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        response = call(cursor=cursor, **params) if cursor else call(**params)
        pages.append(response[key])
        cursor = (response.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return pages


# -- identity and tokens ----------------------------------------------------------------


def test_url_and_identity(slack: FakeSlack) -> None:
    assert slack.url.startswith("http://127.0.0.1:") and slack.url.endswith("/api/")
    auth = client(slack).auth_test()
    assert auth["team_id"] == "T0TEST0001"  # from users.json
    assert auth["user_id"] == slack.workspace.bot.user_id and auth["bot_id"]
    assert client(slack).team_info()["team"]["id"] == "T0TEST0001"


def test_tokens_are_checked(slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as wrong:
        WebClient(token="xoxb-wrong", base_url=slack.url).auth_test()
    assert wrong.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as missing:
        WebClient(base_url=slack.url).auth_test()
    assert missing.value.response["error"] == "not_authed"
    # the token may also come as a form field, and the expected token is configurable
    status, _, body = raw_call(
        slack,
        "auth.test",
        f"token={slack.token}".encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200 and json.loads(body)["ok"]
    slack.token = None  # any xox… token
    assert WebClient(token="xoxp-anything", base_url=slack.url).auth_test()["ok"]
    assert slack.calls[0].params == {}, "the token is never recorded"


def test_json_bodies_and_unknown_methods(slack: FakeSlack) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {slack.token}"}
    status, _, body = raw_call(
        slack, "conversations.info", json.dumps({"channel": "C1GEN"}).encode(), headers
    )
    assert status == 200 and json.loads(body)["channel"]["name"] == "general"
    _, _, body = raw_call(slack, "nope.nothing", b"{}", headers)
    assert json.loads(body) == {"ok": False, "error": "unknown_method"}


# -- users and conversations ------------------------------------------------------------


def test_users_are_cursor_paged(slack: FakeSlack) -> None:
    pages = all_pages(client(slack).users_list, "members", limit=2)
    assert [len(p) for p in pages] == [2, 2]  # 3 exported users + the app's bot user
    ids = [u["id"] for p in pages for u in p]
    assert ids[:3] == [u["id"] for u in USERS] and ids[3] == slack.workspace.bot.user_id
    assert client(slack).users_info(user="U2BOB")["user"]["name"] == "bob"
    with pytest.raises(SlackApiError, match="user_not_found"):
        client(slack).users_info(user="U404")


def test_conversations_list_only_returns_the_types_asked_for(slack: FakeSlack) -> None:
    api = client(slack)

    def names(**params: Any) -> list[str]:
        return [
            c.get("name") or c["id"]
            for p in all_pages(api.conversations_list, "channels", **params)
            for c in p
        ]

    assert names() == ["general", "old"]  # default types=public_channel
    assert names(exclude_archived=True) == ["general"]
    assert names(types="private_channel") == ["secret"]
    assert names(types="im") == ["D0ANNBOB01"]
    assert names(types="public_channel,private_channel,im", limit=1) == [
        "general",
        "old",
        "secret",
        "D0ANNBOB01",
    ]
    listed = api.conversations_list()["channels"][0]
    assert listed["is_channel"] and not listed["is_private"] and listed["is_member"]
    assert api.conversations_list(types="private_channel")["channels"][0]["is_private"]


# -- history and replies ----------------------------------------------------------------


def test_history_is_top_level_and_broadcasts_newest_first(slack: FakeSlack) -> None:
    messages = client(slack).conversations_history(channel="C1GEN", limit=1000)["messages"]
    texts = [m["text"] for m in messages]
    assert "reply a" not in texts and "reply c, a day later" not in texts
    assert "reply b, also in channel" in texts and "root one" in texts
    keys = [float(m["ts"]) for m in messages]
    assert keys == sorted(keys, reverse=True)
    root = next(m for m in messages if m["ts"] == ROOT)
    assert root["reply_count"] == 3 and root["latest_reply"] == "1704200000.000100"
    assert root["thread_ts"] == ROOT and set(root["reply_users"]) == {"U1ANN", "U2BOB"}
    # a thread whose root is missing gets a tombstone root, as Slack shows it
    tomb = next(m for m in messages if m["ts"] == "1704000000.000100")
    assert tomb["subtype"] == "tombstone" and tomb["reply_count"] == 1


def test_history_pages_cover_every_message_once_and_honour_bounds(slack: FakeSlack) -> None:
    api = client(slack)
    everything = [m["ts"] for m in api.conversations_history(channel="C1GEN", limit=1000)["messages"]]
    pages = all_pages(api.conversations_history, "messages", channel="C1GEN", limit=7)
    assert [len(p) for p in pages[:-1]] == [7] * (len(pages) - 1)
    assert [m["ts"] for p in pages for m in p] == everything
    window = api.conversations_history(channel="C1GEN", oldest=ROOT, latest=ROOT2)["messages"]
    assert [m["ts"] for m in window] == ["1704100200.000100"]  # bounds are exclusive…
    window = api.conversations_history(channel="C1GEN", oldest=ROOT, latest=ROOT2, inclusive=True)["messages"]
    assert [m["ts"] for m in window] == [ROOT2, "1704100200.000100", ROOT]  # …unless inclusive


def test_page_cap_silently_limits_history_and_replies(export: Path) -> None:
    with FakeSlack.from_export(export, max_page_size=2) as slack:
        api = client(slack)
        page = api.conversations_history(channel="C1GEN", limit=100)
        assert len(page["messages"]) == 2 and page["has_more"] and page["response_metadata"]["next_cursor"]
        pages = all_pages(api.conversations_replies, "messages", channel="C1GEN", ts=ROOT, limit=100)
        assert [len(p) for p in pages] == [2, 2]
        thread = [m["text"] for p in pages for m in p]
        assert thread == ["root one", "reply a", "reply b, also in channel", "reply c, a day later"]
        assert pages[1][0]["ts"] != ROOT, "the root comes once, on the first page"


def test_replies_errors(slack: FakeSlack) -> None:
    api = client(slack)
    with pytest.raises(SlackApiError, match="thread_not_found"):
        api.conversations_replies(channel="C1GEN", ts="1.000000")
    with pytest.raises(SlackApiError, match="channel_not_found"):
        api.conversations_replies(channel="C404", ts=ROOT)
    with pytest.raises(SlackApiError, match="invalid_cursor"):
        api.conversations_history(channel="C1GEN", cursor="bm9wZQ==")


# -- membership and scopes --------------------------------------------------------------


def test_not_in_channel_until_joined(export: Path) -> None:
    with FakeSlack.from_export(export, joined_channels=[]) as slack:
        api = client(slack)
        assert api.conversations_list()["channels"][0]["is_member"] is False
        with pytest.raises(SlackApiError, match="not_in_channel"):
            api.conversations_history(channel="C1GEN")
        assert api.conversations_join(channel="C1GEN")["channel"]["is_member"] is True
        assert api.conversations_history(channel="C1GEN")["ok"]
        assert api.conversations_join(channel="C1GEN")["warning"] == "already_in_channel"
        assert slack.workspace.bot.user_id in api.conversations_members(channel="C1GEN")["members"]
        with pytest.raises(SlackApiError, match="method_not_supported_for_channel_type"):
            api.conversations_join(channel="G1SEC")


def test_missing_scope_names_the_scope_needed(export: Path) -> None:
    with FakeSlack.from_export(export, scopes={"channels:read", "users:read"}) as slack:
        api = client(slack)
        assert api.conversations_list()["ok"]
        with pytest.raises(SlackApiError) as info:
            api.conversations_history(channel="C1GEN")
        assert info.value.response["error"] == "missing_scope"
        assert info.value.response["needed"] == "channels:history"
        with pytest.raises(SlackApiError, match="missing_scope"):
            api.conversations_list(types="private_channel")


# -- rate limits and faults -------------------------------------------------------------


def test_rate_limit_answers_429_with_a_fractional_retry_after(export: Path) -> None:
    with FakeSlack.from_export(export, rate_limits={"conversations.history": (2, 1.0)}) as slack:
        api = client(slack)
        api.conversations_history(channel="C1GEN")
        api.conversations_history(channel="C1GEN")
        with pytest.raises(SlackApiError) as info:
            api.conversations_history(channel="C1GEN")
        assert info.value.response.status_code == 429 and info.value.response["error"] == "ratelimited"
        retry_after = float(info.value.response.headers["Retry-After"])
        assert 0 < retry_after <= 1.0
        assert api.auth_test()["ok"], "budgets are per method"
        time.sleep(retry_after)
        assert api.conversations_history(channel="C1GEN")["ok"], "the window has passed"
        assert slack.count("conversations.history", status=429) == 1


def test_slack_sdk_honours_a_whole_second_retry_after(export: Path) -> None:
    """With ``retry_after`` set, the header is Slack's whole seconds: slack_sdk's stock handler
    retries after it (0 s here, plus the handler's own jitter)."""
    with FakeSlack.from_export(export, rate_limits={"auth.test": (1, 60)}, retry_after=0) as slack:
        api = client(slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
        assert api.auth_test()["ok"]
        with pytest.raises(SlackApiError):
            api.auth_test()  # retried once, still limited
        assert [c.status for c in slack.calls] == [200, 429, 429]
        assert slack.calls[-1].fault == "ratelimited"


def test_http_errors_and_slack_errors_on_the_nth_call(slack: FakeSlack) -> None:
    api = client(slack)
    slack.inject_fault("conversations.history", nth=2, status=503)
    slack.inject_fault("users.list", "error", error="fatal_error", times=None)
    assert api.conversations_history(channel="C1GEN")["ok"]
    with pytest.raises(SlackApiError) as info:
        api.conversations_history(channel="C1GEN")
    assert info.value.response.status_code == 503
    assert api.conversations_history(channel="C1GEN")["ok"], "times=1: only the 2nd call fails"
    for _ in range(2):
        with pytest.raises(SlackApiError, match="fatal_error"):
            api.users_list()
    slack.clear_faults()
    assert api.users_list()["ok"]
    slack.inject_fault("auth.test", "ratelimited", nth=1, retry_after=0.25)
    with pytest.raises(SlackApiError) as limited:
        api.auth_test()
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "0.25"


def test_dropped_connections_close_without_a_response(slack: FakeSlack) -> None:
    slack.inject_fault("auth.test", "drop", times=2)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        raw_call(slack, "auth.test", b"", {"Authorization": f"Bearer {slack.token}"})
    # slack_sdk's default ConnectionErrorRetryHandler retries once: the 2nd drop, then success
    assert WebClient(token=slack.token, base_url=slack.url).auth_test()["ok"]
    assert [c.status for c in slack.calls] == [0, 0, 200]
    assert slack.calls[0].response is None and slack.calls[0].fault == "drop"


# -- posting ----------------------------------------------------------------------------


def test_posts_join_their_thread_and_are_recorded(slack: FakeSlack) -> None:
    api = client(slack)
    posted = api.chat_postMessage(
        channel="C1GEN",
        text="a persona reply",
        thread_ts=ROOT,
        username="ann-bot",
        icon_url="https://x/a.png",
    )
    thread = api.conversations_replies(channel="C1GEN", ts=ROOT)["messages"]
    assert thread[-1]["ts"] == posted["ts"] and thread[-1]["text"] == "a persona reply"
    assert thread[-1]["username"] == "ann-bot" and thread[-1]["bot_id"] == slack.workspace.bot.bot_id
    assert thread[0]["reply_count"] == 4
    post = slack.posts[-1]
    assert (post.channel, post.thread_ts, post.username, post.icon_url) == (
        "C1GEN",
        ROOT,
        "ann-bot",
        "https://x/a.png",
    )
    # replying to a reply lands in the same thread; the top level is untouched
    api.chat_postMessage(channel="C1GEN", text="again", thread_ts="1704100100.000100")
    assert slack.posts[-1].thread_ts == ROOT
    history = [m["ts"] for m in api.conversations_history(channel="C1GEN", limit=1000)["messages"]]
    assert posted["ts"] not in history

    updated = api.chat_update(channel="C1GEN", ts=posted["ts"], text="edited reply")
    assert updated["message"]["text"] == "edited reply" and "edited" in updated["message"]
    with pytest.raises(SlackApiError, match="cant_update_message"):
        api.chat_update(channel="C1GEN", ts=ROOT, text="not mine")
    assert api.chat_delete(channel="C1GEN", ts=posted["ts"])["ok"]
    assert posted["ts"] not in [
        m["ts"] for m in api.conversations_replies(channel="C1GEN", ts=ROOT)["messages"]
    ]
    with pytest.raises(SlackApiError, match="no_text"), pytest.warns(UserWarning):
        api.chat_postMessage(channel="C1GEN", text="")


def test_posting_needs_membership(export: Path) -> None:
    with FakeSlack.from_export(export, joined_channels=["general"]) as slack:
        api = client(slack)
        assert api.chat_postMessage(channel="C1GEN", text="hi")["ok"]
        with pytest.raises(SlackApiError, match="not_in_channel"):
            api.chat_postMessage(channel="G1SEC", text="hi")


# -- records ----------------------------------------------------------------------------


def test_calls_are_counted_and_concurrency_is_measured(export: Path) -> None:
    import concurrent.futures

    with FakeSlack.from_export(export, latency=0.05) as slack:
        api = client(slack)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda _: api.auth_test(), range(3)))
        assert slack.count("auth.test") == 3 and slack.count() == 3
        assert slack.max_in_flight == 3
        assert [c.ok for c in slack.calls_to("auth.test")] == [True] * 3
        slack.reset_calls()
        assert slack.count() == 0 and slack.max_in_flight == 0


def test_stopping_frees_the_port(export: Path) -> None:
    slack = FakeSlack.from_export(export).start()
    url = slack.url
    slack.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = slack.url
    with pytest.raises(OSError):
        raw_call_url = urllib.parse.urlsplit(url)
        http.client.HTTPConnection(raw_call_url.hostname, raw_call_url.port, timeout=1).request(
            "GET", "/api/"
        )
