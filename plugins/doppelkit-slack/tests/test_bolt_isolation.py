"""Tenant isolation with one bot token: a request is served only for the team its token
belongs to, and the persona named on the command line answers only in its own team.

(With OAuth, every installed team is served with its own token: ``test_bolt_oauth.py`` tries
each command and event across two installed teams.)
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from bolt_support import BOT_USER, CHANNEL, ROOT_TS, TEAM, Bot, replies
from rich.console import Console

from doppelkit.errors import PersonaError
from doppelkit.models import Persona
from doppelkit_slack.bolt.app import NOT_SERVED
from doppelkit_slack.bolt.training import PipelineSteps
from doppelkit_slack.testing.bolt import wait_idle
from doppelkit_slack.testing.events import app_mention, channel_message

OTHER = "T0002"
VERBS = ["help", "list", "status", "status ann", "train ann", "switch ann", "forget ann"]


@pytest.mark.parametrize("team", [OTHER, "../../etc", "T0001/../T0002", ""])
@pytest.mark.parametrize("verb", VERBS)
def test_commands_for_a_team_the_token_is_not_for_are_refused(bot: Bot, team: str, verb: str) -> None:
    store = bot.runtime.parts.store
    before = (store.list(TEAM), store.active_user(TEAM))
    response = bot.sender.send_command(verb, team=team, user="U_BOB")
    assert response.status == 200 and response.json()["text"] == NOT_SERVED
    assert (store.list(TEAM), store.active_user(TEAM)) == before
    assert store.list(team) == [] if team else True
    assert not (bot.runtime.parts.home.root / "datasets").exists()


@pytest.mark.parametrize("team", [OTHER, "../../etc"])
def test_mentions_and_dms_for_another_team_get_no_reply(bot: Bot, team: str) -> None:
    mention = app_mention(f"<@{BOT_USER}> hi", user="U_BOB", channel=CHANNEL, ts=ROOT_TS, team=team)
    dm = channel_message("hi", user="U_BOB", channel="D0001", ts="1700000001.000100", channel_type="im")
    for event in (mention, dm):
        bot.slack.workspace.add_message(event["channel"], {"ts": event["ts"], "user": "U_BOB", "text": "x"})
        assert bot.sender.send_event(event, team=team).status == 200
    assert replies(bot, 0) == [] and bot.engine.calls == []


def test_an_uninstall_for_another_team_deletes_nothing(bot: Bot) -> None:
    store = bot.runtime.parts.store
    store.upsert_trained(TEAM, "U_ANN", "Ann", "v1")
    for team in (OTHER, "../../etc"):
        assert bot.sender.send_event({"type": "app_uninstalled"}, team=team).status == 200
    wait_idle(bot.runtime)
    assert [r.user_id for r in store.list(TEAM)] == ["U_ANN"]


def test_the_command_line_persona_answers_only_in_its_own_team(bot: Bot) -> None:
    chooser = bot.runtime.chooser
    assert chooser.command_line is not None and chooser.command_line.team == TEAM  # pinned
    bot.runtime.parts.store.delete(TEAM, "U_ANN")  # not the active persona any more: the fallback
    answering = chooser.answering(TEAM)
    assert answering is not None and answering.persona.id == "U_ANN"
    assert chooser.answering(OTHER) is None
    bot.engine.versions[(OTHER, "U_ANN")] = "v9"  # even where that person has a model
    assert chooser.answering(OTHER) is None


def test_training_from_another_workspace_refuses_before_writing(tmp_path: Path) -> None:
    """``/doppel train maya`` from a team the configured source does not read: the real
    pipeline refuses at once; the source's team keeps its dataset, nothing is created."""
    from doppelkit import jobs, pipeline
    from doppelkit.config import compose, validate
    from doppelkit.plugins import build_registries, default_plugin_manager

    manager = default_plugin_manager()
    registries = build_registries(manager)
    home = tmp_path / "home"
    cfg = compose(["persona.user=maya", f"home={home}", "frontend=bolt"], registries)
    run = validate(cfg, registries, needs=("source", "formatter", "frontend"))
    context = pipeline.build_context(run, manager.hook, Console(file=io.StringIO()), registries)
    ingested = jobs.ingest(run, context)
    written = {p: p.stat().st_mtime_ns for p in home.rglob("*")}
    elsewhere = Persona(team="T0ELSEWHERE", user=ingested.persona.user)
    with pytest.raises(PersonaError, match="the source reads workspace"):
        PipelineSteps(context).ingest(elsewhere)
    assert {p: p.stat().st_mtime_ns for p in home.rglob("*")} == written
