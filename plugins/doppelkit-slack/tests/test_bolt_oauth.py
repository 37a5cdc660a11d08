"""The OAuth install, end to end against the fake Slack: two workspaces install the bot
(``/slack/install`` → Slack's consent page → ``/slack/oauth_redirect`` → ``oauth.v2.access`` →
``auth.test``), each is answered with its own token, neither can reach the other's personas,
and every way an install can go wrong ends on a page that says so."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from bolt_support import TEAM, database
from oauth_support import OTHER, OAuthBot, start_oauth_bot, stop_oauth_bot, two_workspaces
from test_bolt_commands import FakeSteps

from doppelkit.testing.fakes import EchoEngine
from doppelkit_slack.bolt.oauth import installed_teams
from doppelkit_slack.testing import Browser

ANN, ZED = "U_ANN", "U_ZED"


@pytest.fixture
def engine() -> EchoEngine:
    return EchoEngine(versions={(TEAM, ANN): "v1", (OTHER, ZED): "v7"})


@pytest.fixture(params=["sqlite", "postgres"])
def bot(request: pytest.FixtureRequest, tmp_path: Path, engine: EchoEngine) -> Iterator[OAuthBot]:
    with database(request.param) as url:
        slack, oauth = two_workspaces()
        made = start_oauth_bot(tmp_path, slack, oauth, engine, store_url=url)
        yield made
        stop_oauth_bot(made)


@pytest.fixture
def installed(bot: OAuthBot) -> OAuthBot:
    for team in (TEAM, OTHER):
        page = bot.install(team)
        assert page.status == 200 and "doppelkit is installed" in page.text, page.text
    assert bot.command(f"switch <@{ANN}>", TEAM, user=ANN).startswith("Now answering as Ann")
    assert bot.command(f"switch <@{ZED}>", OTHER, user=ZED).startswith("Now answering as Zed")
    return bot


def tokens_used(bot: OAuthBot, method: str) -> dict[str | None, set[str]]:
    """Which team's token each call of ``method`` was served for."""
    used: dict[str | None, set[str]] = {}
    for call in bot.slack.calls_to(method):
        used.setdefault(call.team, set()).add(str((call.params or {}).get("channel", "")))
    return used


def test_two_workspaces_install_and_each_is_answered_with_its_own_token(installed: OAuthBot) -> None:
    bot, slack = installed, installed.slack
    assert [c.ok for c in slack.calls_to("oauth.v2.access")] == [True, True]
    assert {c.team for c in slack.calls_to("auth.test") if c.ok} >= {TEAM, OTHER}
    assert installed_teams(bot.runtime.oauth.installations) == [TEAM, OTHER]  # type: ignore[union-attr]
    assert bot.mention(TEAM, "1700000000.000100").status == 200
    assert bot.mention(OTHER, "1700000000.000200").status == 200
    [first] = bot.posts(TEAM, 1)
    [second] = bot.posts(OTHER, 1)
    assert first.username == "Ann-bot" and first.channel == "C0001"
    assert second.username == "Zed-bot" and second.channel == "C0002"
    # each post (and each thread read) went out with the token of the team it was for
    assert tokens_used(bot, "chat.postMessage") == {TEAM: {"C0001"}, OTHER: {"C0002"}}
    assert tokens_used(bot, "conversations.replies") == {TEAM: {"C0001"}, OTHER: {"C0002"}}


def test_no_command_reaches_another_workspaces_personas(installed: OAuthBot) -> None:
    bot = installed
    store = bot.runtime.parts.store
    before = [(r.team, r.user_id, r.state) for t in (TEAM, OTHER) for r in store.list(t)]
    listed = bot.command("list", OTHER)
    assert "Zed" in listed and ANN not in listed and "v1" not in listed
    for verb in ("switch", "status", "forget", "train"):
        reply = bot.command(f"{verb} <@{ANN}>", OTHER)
        assert "No one in this workspace matches" in reply, (verb, reply)
    assert "U_ANN2" in bot.command("switch Ann", OTHER, user="U_ANN2")  # their own Ann: no model
    assert "Answering as: Zed" in bot.command("status", OTHER)
    assert "Answering as: Ann" in bot.command("status", TEAM)
    assert [(r.team, r.user_id, r.state) for t in (TEAM, OTHER) for r in store.list(t)] == before
    assert bot.engine.current_version(TEAM, ANN) == "v1"


def test_a_workspace_that_never_installed_gets_nothing(installed: OAuthBot) -> None:
    bot = installed
    bot.slack.add_workspace(type(bot.slack.workspace)(team_id="T0003", users=[]))
    hook = bot.slack.response_url("t3")
    response = bot.sender.send_command("list", team="T0003", user="U_BOB", response_url=hook)
    assert response.status == 200 and "Ann" not in response.text and "Zed" not in response.text
    [answer] = bot.slack.responses_to("t3")  # Bolt: "your installation is no longer available"
    assert "install" in answer["text"]
    assert bot.sender.send_event({"type": "app_mention", "user": "U_BOB"}, team="T0003").status == 200
    assert bot.runtime.parts.store.list("T0003") == []


def test_a_workspace_reinstalling_keeps_its_personas_and_uses_the_new_token(installed: OAuthBot) -> None:
    bot = installed
    old = bot.oauth.tokens_of(TEAM)
    assert "doppelkit is installed" in bot.install(TEAM).text
    new = bot.oauth.tokens_of(TEAM)
    assert len(new) == len(old) + 1
    bot.oauth.revoke(TEAM)  # the old token stops working; only the new one is valid
    bot.oauth.grants[new[-1]].revoked = False
    bot.mention(TEAM, "1700000000.000300")
    [post] = bot.posts(TEAM, 1)
    assert post.username == "Ann-bot"


def test_token_rotation_refreshes_at_the_configured_api_url(tmp_path: Path, engine: EchoEngine) -> None:
    slack, oauth = two_workspaces(token_rotation=True, expires_in=600)  # due: refreshed on use
    bot = start_oauth_bot(tmp_path, slack, oauth, engine)
    try:
        assert "doppelkit is installed" in bot.install(TEAM).text
        bot.command(f"switch <@{ANN}>", TEAM, user=ANN)
        bot.mention(TEAM, "1700000000.000400")
        [post] = bot.posts(TEAM, 1)
        assert post.username == "Ann-bot"
        refreshes = [
            c for c in slack.calls_to("oauth.v2.access") if c.params.get("grant_type") == "refresh_token"
        ]
        assert refreshes and all(c.ok for c in refreshes), "the rotator talked to the fake, not slack.com"
        posted = slack.calls_to("chat.postMessage")
        assert posted and all(c.ok and c.team == TEAM for c in posted)
    finally:
        stop_oauth_bot(bot)


# --- every way an install can go wrong ---------------------------------------------------------


def callback(bot: OAuthBot, query: str, browser: Browser | None = None) -> tuple[int, str]:
    page = (browser or Browser()).get(f"{bot.url}/slack/oauth_redirect?{query}")
    return page.status, page.text


def nothing_installed(bot: OAuthBot) -> bool:
    return installed_teams(bot.runtime.oauth.installations) == []  # type: ignore[union-attr]


def started(bot: OAuthBot) -> tuple[Browser, str]:
    browser = Browser()
    link = browser.install_link(browser.get(bot.url + "/slack/install"))
    return browser, link


def test_a_forged_state_is_refused(bot: OAuthBot) -> None:
    browser, link = started(bot)
    back = bot.oauth.approve(link, team=TEAM, user=ANN)
    # a state the browser's cookie does not hold: another browser, or a forged link
    assert browser.get(back.replace("state=", "state=x")).status == 400
    # a state the bot never issued, even with a matching cookie
    browser.cookies["slack-app-oauth-state"] = "forged"
    status, text = callback(bot, "code=whatever&state=forged", browser)
    assert status == 401 and "expired or was already used" in text
    assert nothing_installed(bot) and bot.slack.count("oauth.v2.access") == 0


def test_a_replayed_state_is_refused(bot: OAuthBot) -> None:
    browser, link = started(bot)
    back = bot.oauth.approve(link, team=TEAM, user=ANN)
    assert browser.get(back).status == 200
    replay = browser.get(back)
    assert replay.status == 401 and "already used" in replay.text
    assert bot.slack.count("oauth.v2.access") == 1


def test_an_expired_state_is_refused_and_purged(bot: OAuthBot) -> None:
    browser, link = started(bot)
    states = bot.runtime.oauth.states  # type: ignore[union-attr]
    with states.engine.begin() as conn:
        conn.execute(states.oauth_states.update().values(expire_at=datetime(2000, 1, 1)))
    back = bot.oauth.approve(link, team=TEAM, user=ANN)
    page = browser.get(back)
    assert page.status == 401 and "expired" in page.text and nothing_installed(bot)
    started(bot)  # a new install link purges the expired states
    with states.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(states.oauth_states)).scalar() == 1


def test_a_missing_code_is_refused(bot: OAuthBot) -> None:
    browser, _link = started(bot)
    state = browser.cookies["slack-app-oauth-state"]
    page = browser.get(f"{bot.url}/slack/oauth_redirect?state={state}")
    assert page.status == 401 and "did not send an authorisation code" in page.text
    assert nothing_installed(bot)


def test_a_cancelled_install_says_so(bot: OAuthBot) -> None:
    browser, link = started(bot)
    page = browser.get(bot.oauth.decline(link))
    assert page.status == 200 and "cancelled" in page.text and "Start the install again" in page.text
    assert nothing_installed(bot) and bot.slack.count("oauth.v2.access") == 0


def test_oauth_v2_access_failing_is_a_page_not_an_install(bot: OAuthBot) -> None:
    bot.slack.inject_fault("oauth.v2.access", "error", error="invalid_code")
    page = bot.install(TEAM)
    assert page.status == 401 and "did not accept the authorisation" in page.text
    assert nothing_installed(bot)
    bot.slack.inject_fault("oauth.v2.access", "http", status=500, times=None)
    page = bot.install(TEAM)
    assert page.status == 401 and nothing_installed(bot)


def test_the_database_failing_during_the_install_is_a_page_not_a_500(
    bot: OAuthBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    installations = bot.runtime.oauth.installations  # type: ignore[union-attr]

    def down(*_args: object, **_kwargs: object) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("the database is down"))

    monkeypatch.setattr(installations, "save", down)
    page = bot.install(TEAM)
    assert page.status == 503 and "database is unavailable" in page.text


def test_oauth_needs_http_mode_and_the_app_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from doppelkit.errors import UserError
    from doppelkit_slack.bolt.config import BoltConfig
    from doppelkit_slack.bolt.server import bot_credentials

    monkeypatch.setenv("SLACK_CLIENT_ID", "1111.2222")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "secret")
    with pytest.raises(UserError, match="Socket Mode serves one workspace"):
        bot_credentials(BoltConfig(oauth=True, mode="socket"))
    token, credentials = bot_credentials(BoltConfig(oauth=True, mode="http"))
    assert token is None and credentials is not None and credentials.client_id == "1111.2222"
    monkeypatch.delenv("SLACK_CLIENT_SECRET")
    with pytest.raises(UserError, match="SLACK_CLIENT_SECRET is not set"):
        bot_credentials(BoltConfig(oauth=True, mode="http"))


def test_the_database_down_during_an_event_is_an_apology_not_a_5xx(
    installed: OAuthBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from doppelkit_slack.bolt.app import AUTHORIZE_FAILED

    bot = installed
    installations = bot.runtime.oauth.installations  # type: ignore[union-attr]

    def down(*_args: object, **_kwargs: object) -> None:
        raise sa.exc.OperationalError("SELECT", {}, Exception("the database is down"))

    monkeypatch.setattr(installations, "find_bot", down)
    assert bot.mention(TEAM, "1700000000.000500").status == 200
    hook = bot.slack.response_url("down")
    response = bot.sender.send_command("status", team=TEAM, user="U_BOB", response_url=hook)
    assert response.status == 200
    assert [r["text"] for r in bot.slack.responses_to("down")] == [AUTHORIZE_FAILED]
    monkeypatch.undo()  # back up: the bot answers again, nothing crashed meanwhile
    assert bot.posts(TEAM, 0) == []
    bot.mention(TEAM, "1700000000.000600")
    assert len(bot.posts(TEAM, 1)) == 1


def test_consent_is_asked_in_the_persons_own_workspace_with_its_token(installed: OAuthBot) -> None:
    import json as jsonlib

    from doppelkit_slack.bolt.consent import APPROVE, APPROVED
    from doppelkit_slack.testing.events import block_action

    bot = installed
    bot.runtime.parts.commands.consent.mode = "ask"  # type: ignore[union-attr]
    steps = FakeSteps(bot.engine)
    bot.runtime.training.steps = lambda: steps
    reply = bot.command(f"train <@{ZED}>", OTHER, user="U_OLGA2")
    assert reply.startswith("I asked Zed for consent"), reply
    [ask] = [c for c in bot.slack.calls_to("chat.postMessage") if c.params.get("channel") == ZED]
    assert ask.team == OTHER and ask.ok, "asked with the second workspace's token"
    blocks = ask.params["blocks"]
    blocks = jsonlib.loads(blocks) if isinstance(blocks, str) else blocks
    [value] = {e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]}
    # the same button sent as if from the first workspace is not valid there
    hook = bot.slack.response_url("wrong-team")
    bot.sender.send_interaction(block_action(APPROVE, value, user=ZED, team=TEAM, response_url=hook))
    assert bot.slack.responses_to("wrong-team")[0]["text"] == "This request is not valid here."
    hook = bot.slack.response_url("zed")
    assert (
        bot.sender.send_interaction(
            block_action(APPROVE, value, user=ZED, team=OTHER, response_url=hook)
        ).status
        == 200
    )
    bot.runtime.training.join(5)
    assert bot.slack.responses_to("zed")[0]["text"].startswith("You approved")
    assert steps.trained == [ZED]
    consents = bot.runtime.parts.commands.consent.consents  # type: ignore[union-attr]
    assert consents.get(OTHER, ZED).state == APPROVED and consents.get(TEAM, ZED) is None  # type: ignore[union-attr]


def test_a_detached_training_posts_with_the_workspaces_installed_token(
    installed: OAuthBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train_detached`` (a backend's own container) finds the team's token in the database."""
    from oauth_support import CLIENT_ID, CLIENT_SECRET

    from doppelkit_slack.bolt.training import detached_client

    monkeypatch.setenv("SLACK_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SLACK_CLIENT_SECRET", CLIENT_SECRET)
    bot = installed
    client = detached_client(bot.runtime.config, bot.runtime.parts.store, OTHER)
    assert client.token == bot.oauth.tokens_of(OTHER)[-1]
    client.chat_postMessage(channel="C0002", text="Training Zed…")
    [call] = bot.slack.calls_to("chat.postMessage")
    assert call.ok and call.team == OTHER
