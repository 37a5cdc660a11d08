"""Uninstall and revocation with OAuth installs: the workspace's installs, personas, files and
scrape state go (and nothing of the other workspace); a revoked *user* token is not an
uninstall; a training run in progress stops and leaves nothing behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bolt_support import TEAM, database, wait_until
from oauth_support import OTHER, OTHER_BOT_USER, OAuthBot, start_oauth_bot, stop_oauth_bot, two_workspaces
from test_bolt_uninstall import seed_workspace

from doppelkit.models import Persona
from doppelkit.testing.fakes import EchoEngine
from doppelkit_slack.bolt.oauth import installed_teams
from doppelkit_slack.testing.bolt import wait_idle


@pytest.fixture(params=["sqlite", "postgres"])
def bot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OAuthBot]:
    with database(request.param) as url:
        yield from installed_bot(tmp_path, url)


def installed_bot(tmp_path: Path, url: str | None) -> Iterator[OAuthBot]:
    slack, oauth = two_workspaces()
    made = start_oauth_bot(
        tmp_path, slack, oauth, EchoEngine(versions={(TEAM, "U_ANN"): "v1", (OTHER, "U_ZED"): "v1"}),
        user_scopes=["users:read"],  # the installer also grants a user token
        store_url=url,
    )  # fmt: skip
    for team in (TEAM, OTHER):
        assert "doppelkit is installed" in made.install(team, user="U_ANN" if team == TEAM else "U_ZED").text
    made.command("switch <@U_ANN>", TEAM, user="U_ANN")
    made.command("switch <@U_ZED>", OTHER, user="U_ZED")
    yield made
    stop_oauth_bot(made)


def installs(bot: OAuthBot) -> list[str]:
    return installed_teams(bot.runtime.oauth.installations)  # type: ignore[union-attr]


def event(bot: OAuthBot, team: str, body: dict[str, Any]) -> int:
    status = bot.sender.send_event(body, team=team).status
    wait_idle(bot.runtime)
    return status


def test_uninstall_removes_the_workspace_installs_and_data_only(bot: OAuthBot) -> None:
    home, store = bot.runtime.parts.home, bot.runtime.parts.store
    ours, theirs = seed_workspace(home, OTHER), seed_workspace(home, TEAM)
    assert event(bot, OTHER, {"type": "app_uninstalled"}) == 200
    assert installs(bot) == [TEAM]
    assert not any(p.exists() for p in ours) and store.list(OTHER) == []
    assert all(p.exists() for p in theirs) and [r.user_id for r in store.list(TEAM)] == ["U_ANN"]
    bot.mention(OTHER, "1700000000.000100")
    bot.mention(TEAM, "1700000000.000200")
    assert bot.posts(OTHER, 0) == [] and len(bot.posts(TEAM, 1)) == 1


def test_revoking_the_bot_token_is_an_uninstall(bot: OAuthBot) -> None:
    paths = seed_workspace(bot.runtime.parts.home, OTHER)
    assert event(bot, OTHER, {"type": "tokens_revoked", "tokens": {"bot": [OTHER_BOT_USER]}}) == 200
    assert installs(bot) == [TEAM] and not any(p.exists() for p in paths)


def test_a_revoked_installer_token_keeps_the_bot_working(bot: OAuthBot) -> None:
    paths = seed_workspace(bot.runtime.parts.home, OTHER)
    installations = bot.runtime.oauth.installations  # type: ignore[union-attr]
    assert installations.find_installation(enterprise_id=None, team_id=OTHER, user_id="U_ZED") is not None
    bot.oauth.revoke(OTHER, "user")
    assert event(bot, OTHER, {"type": "tokens_revoked", "tokens": {"oauth": ["U_ZED"]}}) == 200
    # the installer's row (their user token) is gone; the bot, its data and its answers stay
    assert installations.find_installation(enterprise_id=None, team_id=OTHER, user_id="U_ZED") is None
    assert installs(bot) == [TEAM, OTHER] and all(p.exists() for p in paths)
    bot.mention(OTHER, "1700000000.000300")
    [post] = bot.posts(OTHER, 1)
    assert post.username == "Zed-bot"


class GatedSteps:
    """Ingest waits for the gate; train publishes an adapter file (as a real run would)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.entered, self.gate = threading.Event(), threading.Event()
        self.trained: list[str] = []

    def ingest(self, persona: Persona) -> tuple[int, Any]:
        dataset = self.home / "datasets" / persona.team / persona.id / "dataset.jsonl"
        dataset.parent.mkdir(parents=True, exist_ok=True)
        self.entered.set()
        self.gate.wait(5)
        dataset.parent.mkdir(parents=True, exist_ok=True)  # as ingest's atomic writes do
        dataset.write_text("{}\n")  # written after the uninstall deleted everything
        return 1, dataset

    def train(self, persona: Persona, ingested: Any) -> str:
        self.trained.append(persona.id)
        return "v2"


def test_uninstall_while_a_training_runs_stops_it_and_leaves_nothing(bot: OAuthBot) -> None:
    home = bot.runtime.parts.home
    steps = GatedSteps(home.root)
    bot.runtime.training.steps = lambda: steps
    reply = bot.command("train <@U_ZED>", OTHER, user="U_ZED")
    assert "training" in reply.lower(), reply
    assert steps.entered.wait(5)
    assert event(bot, OTHER, {"type": "app_uninstalled"}) == 200
    steps.gate.set()
    bot.runtime.training.join(5)
    assert steps.trained == [], "the run stopped before training"
    assert not (home.root / "datasets" / OTHER).exists(), "what it wrote after the uninstall is gone"
    assert bot.runtime.parts.store.list(OTHER) == [] and installs(bot) == [TEAM]
    assert wait_until(lambda: not any(t.is_alive() for t in bot.runtime.training.threads))
