"""``app_uninstalled`` and ``tokens_revoked``: the workspace's data goes only when the app is
really gone from it (uninstalled, or *our bot's* token revoked), and after the ack."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from bolt_support import BOT_ID, BOT_USER, TEAM, Bot

from doppelkit.home import Home
from doppelkit_slack.testing.bolt import wait_idle

OTHER_TEAM = "T0002"


def seed_workspace(home: Home, team: str) -> list[Path]:
    """A trained persona's files and the team-wide corpus, tiny base and scrape state."""
    paths = [
        home.datasets(team, "U_ANN") / "dataset.jsonl",
        home.adapters(team, "U_ANN") / "v1" / "adapter_model.safetensors",
        home.state / "checkpoints" / team / "U_ANN" / "run1" / "state.json",
        home.cache / "corpus" / team / "abc.jsonl",
        home.state / "scrape" / team / "plan.json",
        home.cache / "tiny" / f"base-{team}" / "model.safetensors",
    ]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (home.cache / "tiny" / f"base-{team}" / "tiny.json").write_text(json.dumps({"team": team}))
    return paths


def revoked(bot: Bot, *, oauth: list[str] = (), bots: list[str] = ()) -> int:  # type: ignore[assignment]
    event = {"type": "tokens_revoked", "tokens": {"oauth": list(oauth), "bot": list(bots)}}
    status = bot.sender.send_event(event, team=TEAM).status
    wait_idle(bot.runtime)
    return status


def test_uninstall_deletes_the_workspace_data_and_only_that(bot: Bot) -> None:
    home, store = bot.runtime.parts.home, bot.runtime.parts.store
    ours, others = seed_workspace(home, TEAM), seed_workspace(home, OTHER_TEAM)
    store.upsert_trained(TEAM, "U_ANN", "Ann", "v1")
    store.set_active(TEAM, "U_ANN")
    store.upsert_trained(OTHER_TEAM, "U_ANN", "Ann", "v1")
    assert bot.sender.send_event({"type": "app_uninstalled"}, team=TEAM).status == 200
    wait_idle(bot.runtime)
    assert store.list(TEAM) == [] and store.active_user(TEAM) is None
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in others) and len(store.list(OTHER_TEAM)) == 1


def test_a_revoked_user_token_keeps_the_workspace(bot: Bot) -> None:
    home, store = bot.runtime.parts.home, bot.runtime.parts.store
    paths = seed_workspace(home, TEAM)
    store.upsert_trained(TEAM, "U_ANN", "Ann", "v1")
    assert revoked(bot, oauth=["U_BOB"]) == 200
    assert revoked(bot, bots=["USOMEOTHERBOT"]) == 200
    assert all(p.exists() for p in paths) and len(store.list(TEAM)) == 1


@pytest.mark.parametrize("our_id", [BOT_USER, BOT_ID])
def test_revoking_our_bot_token_deletes_the_workspace(bot: Bot, our_id: str) -> None:
    home, store = bot.runtime.parts.home, bot.runtime.parts.store
    paths = seed_workspace(home, TEAM)
    store.upsert_trained(TEAM, "U_ANN", "Ann", "v1")
    # Nothing has told the bot who it is yet: it asks auth.test.
    assert revoked(bot, oauth=["U_BOB"], bots=[our_id]) == 200
    assert not any(p.exists() for p in paths) and store.list(TEAM) == []


def test_revocation_when_our_token_is_already_dead_deletes(bot: Bot) -> None:
    store = bot.runtime.parts.store
    store.upsert_trained(TEAM, "U_ANN", "Ann", "v1")
    bot.slack.inject_fault("auth.test", "error", error="token_revoked", times=None)
    assert revoked(bot, bots=[BOT_USER]) == 200
    assert store.list(TEAM) == []


def test_deletion_runs_after_the_ack(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    eraser = bot.runtime.parts.eraser
    started, release = threading.Event(), threading.Event()
    erase = eraser.erase

    def slow_erase(team: str) -> None:
        started.set()
        release.wait(5)
        erase(team)

    monkeypatch.setattr(eraser, "erase", slow_erase)
    response = bot.sender.send_event({"type": "app_uninstalled"}, team=TEAM)
    assert response.status == 200 and started.wait(5), "acknowledged before the deletion finished"
    release.set()
    wait_idle(bot.runtime)


def test_deleting_never_follows_symlinks_out_of_home(bot: Bot, tmp_path: Path) -> None:
    home = bot.runtime.parts.home
    outside = tmp_path / "outside"
    (outside / "U_ANN").mkdir(parents=True)
    (outside / "U_ANN" / "keep").write_text("x")
    corpus = home.cache / "corpus" / TEAM
    corpus.parent.mkdir(parents=True)
    corpus.symlink_to(outside)
    (home.root / "datasets").mkdir(parents=True)
    (home.root / "datasets" / TEAM).symlink_to(outside)
    bot.sender.send_event({"type": "app_uninstalled"}, team=TEAM)
    wait_idle(bot.runtime)
    assert (outside / "U_ANN" / "keep").is_file()
    assert not corpus.is_symlink()
