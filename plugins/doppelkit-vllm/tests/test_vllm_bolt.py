"""The Slack bot (frontend=bolt) on engine=vllm: a mention is answered in the thread with what
engine=peft would post (the fake Slack Web API; Bolt's own listeners, fed a Socket Mode
envelope as Bolt's socket handler feeds it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vllm_testkit import VLLM_TINY, make_peft, make_vllm

from doppelkit.home import Home
from doppelkit.models import Persona, User
from doppelkit.testing.helpers import make_context
from doppelkit_lora.testing.engines import build_tiny_base, publish_random_adapter

TEAM, CHANNEL, BOT_USER, TOKEN = "T0001", "C0001", "UBOT0001", "xoxb-test-token"
ANN = Persona(team=TEAM, user=User(id="U_ANN", display_name="Ann"))
QUESTIONS = ["did the deploy go out?", "lunch at noon?", "why is CI red again?"]


def fake_slack() -> Any:
    from doppelkit_slack.testing import FakeSlack
    from doppelkit_slack.testing.fake_workspace import BotIdentity, Conversation, FakeWorkspace

    def member(user_id: str, name: str) -> dict[str, Any]:
        profile = {"display_name": name, "real_name": name}
        return {"id": user_id, "name": name.lower(), "is_bot": False, "deleted": False, "profile": profile}

    workspace = FakeWorkspace(
        team_id=TEAM,
        users=[member("U_ANN", "Ann"), member("U_BOB", "Bob")],
        conversations=[Conversation(CHANNEL, "public", {"id": CHANNEL, "name": "general"})],
        bot=BotIdentity(user_id=BOT_USER, bot_id="BBOT0001", name="doppel"),
    )
    return FakeSlack(workspace, token=TOKEN).start()


def bot_posts(home: Home, engine: Any, run: int) -> list[str]:
    """Bob mentions the bot three times (three threads); what the bot posts, thread by thread.
    ``run`` makes the events and threads new (the bot's store in ``home`` remembers them)."""
    from doppelkit_slack.bolt.config import BoltConfig
    from doppelkit_slack.bolt.runtime import build_runtime
    from doppelkit_slack.testing.bolt import run_socket_mode_request, wait_idle
    from doppelkit_slack.testing.events import app_mention, event_envelope

    with fake_slack() as slack:
        config = BoltConfig(mode="socket", api_url=slack.url, avatar="none", api_retry_backoff=0.01)
        context = make_context(home.root, persona=ANN.id)
        runtime = build_runtime(config, context, engine, bot_token=TOKEN, signing_secret=None)
        try:
            for i, question in enumerate(QUESTIONS):
                ts = f"17000000{i:02d}.{run:06d}"
                event = app_mention(
                    f"<@{BOT_USER}> {question}", user="U_BOB", channel=CHANNEL, ts=ts, team=TEAM
                )
                message = {k: event[k] for k in ("ts", "user", "text")}
                slack.workspace.add_message(CHANNEL, message)
                response = run_socket_mode_request(
                    runtime.app, event_envelope(event, team=TEAM, event_id=f"Ev{i}")
                )
                assert response.status == 200
            wait_idle(runtime, timeout=120)
            deadline = time.monotonic() + 10
            while len({p.thread_ts for p in slack.posts}) < len(QUESTIONS) and time.monotonic() < deadline:
                time.sleep(0.05)
            return [p.text for p in sorted(slack.posts, key=lambda p: float(p.thread_ts or p.ts))]
        finally:
            runtime.close()
            engine.close()


def test_the_slack_bot_answers_with_engine_vllm_as_with_engine_peft(tmp_path: Path) -> None:
    home = Home.at(tmp_path / "home")
    base = build_tiny_base(home, VLLM_TINY, key="bolt")
    publish_random_adapter(home, base, ANN, seed=12)
    with_vllm = bot_posts(home, make_vllm(home), run=1)
    with_peft = bot_posts(home, make_peft(home), run=2)
    assert len(with_vllm) >= len(QUESTIONS), f"every mention answered: {with_vllm}"
    assert with_vllm == with_peft
