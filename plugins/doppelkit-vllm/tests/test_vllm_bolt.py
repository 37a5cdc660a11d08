"""The Slack bot (frontend=bolt) on engine=vllm: a mention is answered in the thread with what
engine=peft would post (the fake Slack Web API; Bolt's own listeners, fed a Socket Mode
envelope as Bolt's socket handler feeds it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from vllm_testkit import VLLM_ON_CPU, VLLM_TINY, make_peft, make_vllm

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


def descendants(pid: int) -> set[int]:
    """The live processes below ``pid`` (from /proc; zombies count as gone)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_command_line_bot_on_engine_vllm_answers_and_stops_with_its_engine(tmp_path: Path) -> None:
    """``doppelkit serve frontend=bolt engine=vllm``: a signed mention is answered; SIGTERM stops
    the command and vLLM's engine processes with it (they used to be left running, orphaned)."""
    from doppelkit_slack.testing.events import EventSender, app_mention

    home = Home.at(tmp_path / "home")
    publish_random_adapter(home, build_tiny_base(home, VLLM_TINY, key="cli"), ANN, seed=12)
    secret = "test-signing-secret"
    with fake_slack() as slack:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "doppelkit.cli",
                "serve",
                "frontend=bolt",
                *VLLM_ON_CPU,
                "frontend.mode=http",
                "frontend.port=0",
                f"frontend.api_url={slack.url}",
                "frontend.avatar=none",
                f"persona.user={ANN.id}",
                f"home={home.root}",
                "engine.max_new_tokens=12",
            ],
            env={
                **os.environ,
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_SIGNING_SECRET": secret,
                "OMP_NUM_THREADS": "1",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        timer = threading.Timer(240, process.kill)
        timer.start()
        lines: list[str] = []
        try:
            while not any("listening on" in line for line in lines):
                lines.append(process.stderr.readline())
                assert lines[-1], "".join(lines[-40:])
            url = re.search(r"listening on (\S+)", lines[-1]).group(1)  # type: ignore[union-attr]
            drain = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
            drain.start()
            event = app_mention(
                f"<@{BOT_USER}> did the deploy go out?",
                user="U_BOB",
                channel=CHANNEL,
                ts="1700000000.000100",
                team=TEAM,
            )
            slack.workspace.add_message(CHANNEL, {k: event[k] for k in ("ts", "user", "text")})
            assert EventSender(url, secret).send_event(event, team=TEAM).status == 200
            deadline = time.monotonic() + 180
            while not slack.posts and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [p.username for p in slack.posts] == ["Ann-bot"], "".join(lines[-40:])
            engine_processes = descendants(process.pid)
            assert engine_processes, "vLLM runs its engine core in a process of its own"
            process.terminate()
            assert process.wait(60) == 143, "".join(lines[-40:])
        finally:
            timer.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in engine_processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in engine_processes), "vLLM's processes outlived the bot"
