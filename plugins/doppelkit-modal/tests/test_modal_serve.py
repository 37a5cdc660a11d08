"""``doppelkit serve +backend=modal frontend=bolt`` deploys one app; its ``Engine`` class loads
the base once per container and follows new versions; its ``Web`` class is the Slack bot as an
ASGI endpoint that acks at once, replies once per mention, and starts ``/doppel train`` as a
job. Driven in this process: bodies with ``.local()``, signed events against FakeSlack."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modal_testkit import CPU, FAST, PERSONA, TEAM, USER, overrides, run

import doppelkit_modal.hosting as hosting
from doppelkit.errors import UserError
from doppelkit.home import Home
from doppelkit_modal.testing import LocalModal
from doppelkit_slack.bolt.server import HttpServer
from doppelkit_slack.sources.export import SAMPLE_WORKSPACE
from doppelkit_slack.testing import EventSender, FakeSlack, app_mention

TOKEN, SECRET = "xoxb-modal-test", "modal-test-signing-secret"
CHANNEL = "C0GENERAL1"
pytestmark = pytest.mark.filterwarnings("ignore:.*will not have access to the mounted Volume:UserWarning")
BOT = "U0FAKEBOT1"
PERSONA_DATA = {"team": TEAM, "user": {"id": USER, "display_name": PERSONA}}
THREAD_DATA = {
    "team": TEAM,
    "channel": CHANNEL,
    "ts": "1.000001",
    "messages": [{"ts": "1.000001", "user": "U0ERIK0002", "text": "hey, lunch?"}],
}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.from_export(SAMPLE_WORKSPACE, token=TOKEN) as fake:
        yield fake


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """What the Modal Secret (backend.web_secrets) gives the bot's containers. SQLite stands in
    for PostgreSQL here — one process, a file outside the Volume — so the check that refuses
    SQLite on Modal (tested on its own below) lets this one URL through."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("DOPPELKIT_STORE_URL", url)
    real = hosting.check_store_url

    def allow_this_sqlite(found: str | None, *, from_secret_possible: bool) -> None:
        if found != url:
            real(found, from_secret_possible=from_secret_possible)

    monkeypatch.setattr(hosting, "check_store_url", allow_this_sqlite)
    return url


def bot_overrides(modal: LocalModal, home: Path, slack: FakeSlack, *extra: str) -> list[str]:
    return [
        *modal.overrides(),
        *CPU,
        *FAST,
        f"home={home}",
        "frontend=bolt",
        f"frontend.api_url={slack.url}",
        "frontend.avatar=none",
        "frontend.api_retry_backoff=0.01",
        "engine.max_new_tokens=6",
        *extra,
    ]


def wait_for(predicate: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


# --- deploying ------------------------------------------------------------------------------------


def test_serve_deploys_the_app_and_prints_the_request_url(
    modal: LocalModal, tmp_path: Path, slack: FakeSlack, store: str
) -> None:
    _, out = run("serve", bot_overrides(modal, tmp_path / "home", slack))
    assert modal.calls == ["check_credentials", "check_secrets", "deploy"]
    built = modal.deployment()
    assert (built.train, built.job, built.engine, built.web) != (None,) * 4 and built.web is not None
    assert "Request URL for the Slack app (Event Subscriptions and /doppel): " in out
    assert "https://doppelkit--web-asgi.modal.invalid/slack/events" in out
    assert "modal app stop doppelkit" in out and "scales to zero" in out
    assert "source=slack" in out, "the note: the deployed bot reads the workspace through the Web API"
    assert built.run_data["home"] == str(modal.volume) and built.run_data["dataset"]["path"] is None


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("frontend.store_url=sqlite:////tmp/doppel.db",), "frontend.store_url is SQLite"),
        (("backend.web_secrets=[]",), "would be SQLite on the Volume"),
    ],
)
def test_a_store_modal_cannot_share_is_refused_before_deploying(
    modal: LocalModal, tmp_path: Path, slack: FakeSlack, extra: tuple[str, ...], says: str
) -> None:
    with pytest.raises(UserError, match=says) as caught:
        run("serve", bot_overrides(modal, tmp_path / "home", slack, *extra))
    assert "DOPPELKIT_STORE_URL=postgresql+psycopg://" in str(caught.value) and "\n" not in str(caught.value)
    assert "deploy" not in modal.calls


def test_missing_secrets_are_named_with_what_to_put_in_them(
    tmp_path: Path, slack: FakeSlack, store: str
) -> None:
    from doppelkit_modal.testing import local_modal

    with local_modal(tmp_path / "volume", missing_secrets=frozenset({"doppelkit-slack", "hf"})) as modal:
        with pytest.raises(UserError) as caught:
            run("serve", bot_overrides(modal, tmp_path / "home", slack, "backend.secrets=[hf]"))
        assert modal.deployed is None
    message = str(caught.value)
    assert "Modal Secret(s) doppelkit-slack, hf not found" in message
    assert (
        "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and DOPPELKIT_STORE_URL" in message and "HF_TOKEN" in message
    )


# --- the engine class -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_engine_class_loads_the_base_once_and_follows_new_versions(
    modal: LocalModal, tmp_path: Path, slack: FakeSlack, store: str
) -> None:
    home = tmp_path / "home"
    run("run", overrides(modal, home))
    run("serve", bot_overrides(modal, home, slack))
    obj = modal.engine_object()

    assert obj.current_version.local(TEAM, USER) == "v1"  # the first call runs @modal.enter
    instance = obj._cached_user_cls_instance()
    engine = instance.engine
    assert type(engine).__name__ == "PeftEngine", "the run's engine=, built by build_engine"
    assert engine.stats.base_loads == 1 and instance.loaded > 0, "@modal.enter loaded the base (warm-up)"
    reply = obj.reply.local(PERSONA_DATA, THREAD_DATA, BOT)
    assert isinstance(reply, list) and all(isinstance(part, str) for part in reply)
    assert all(isinstance(chunk, str) for chunk in obj.stream.local(PERSONA_DATA, THREAD_DATA, BOT))
    [listed] = obj.personas.local()
    assert (listed["persona_id"], listed["version"]) == (USER, "v1")

    # The train function publishes v2: the same container serves it after a reload, no redeploy.
    reloads = modal.reloads
    run("train", overrides(modal, home))
    assert obj.current_version.local(TEAM, USER) == "v2"
    obj.reply.local(PERSONA_DATA, THREAD_DATA, BOT)
    assert modal.reloads > reloads
    assert engine.stats.base_loads == 1 and engine.stats.adapter_loads == 2


@pytest.mark.slow
def test_chat_runs_here_with_replies_from_an_ephemeral_engine_class(
    modal: LocalModal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    run("run", overrides(modal, home))
    monkeypatch.setattr("sys.stdin", io.StringIO("how is the billing page going?\n"))
    _, out = run("chat", overrides(modal, home, "engine.max_new_tokens=6", "engine.seed=3"))
    assert modal.calls[-2:] == ["check_credentials", "engine_session"]
    assert "starting the engine on a CPU container" in out
    assert capsys.readouterr().out.startswith("maya: ")
    assert modal.built[-1].engine is not None and modal.built[-1].web is None


# --- the web endpoint ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_web_endpoint_trains_on_doppel_train_and_answers_each_mention_once(
    modal: LocalModal, tmp_path: Path, slack: FakeSlack, store: str
) -> None:
    run("serve", bot_overrides(modal, tmp_path / "home", slack))
    with modal.web_app() as app:
        server = HttpServer(app, "127.0.0.1", 0).start()
        try:
            sender = EventSender(server.url + "/slack/events", SECRET)

            # /doppel train: acknowledged at once; the deployed job function does the work.
            started = time.perf_counter()
            ack = sender.send_command(
                f"train <@{USER}>", team=TEAM, channel=CHANNEL, user=USER
            )  # maya trains herself
            assert ack.status == 200 and time.perf_counter() - started < 3
            assert "Started training maya" in ack.text
            spawned = [c for c in modal.calls if c.startswith("side.spawn")]
            assert spawned == ["side.spawn doppelkit_slack.bolt.training:train_detached"]
            modal.join()
            texts = [p.text for p in slack.posts]
            assert texts[0] == "Reading maya's messages…" and texts[1].startswith("Training maya on ")
            assert texts[-1].startswith("maya is ready (v1)")
            assert (Home.at(modal.volume).adapters(TEAM, USER) / "CURRENT").read_text().strip() == "v1"
            assert ("side.train") in modal.calls, "the job called the deployed train function"
            posted = len(slack.posts)

            # A mention: acked within Slack's 3 s, one reply from the engine class, retries too.
            event = app_mention(
                f"<@{BOT}> lunch today?",
                user="U0ERIK0002",
                channel=CHANNEL,
                ts="1700000000.000100",
                team=TEAM,
            )
            slack.workspace.add_message(CHANNEL, {k: event[k] for k in ("ts", "user", "text")})
            started = time.perf_counter()
            assert sender.send_event(event, team=TEAM, event_id="EvMODAL1").status == 200
            assert time.perf_counter() - started < 3
            assert sender.send_event(event, team=TEAM, event_id="EvMODAL1", retry_num=1).status == 200
            assert wait_for(lambda: len(slack.posts) > posted)
            time.sleep(0.5)  # room for a duplicate, which must not come
            [reply] = slack.posts[posted:]
            assert reply.channel == CHANNEL and reply.thread_ts == "1700000000.000100"
            assert reply.username == "maya-bot"
            assert modal.engine_object()._cached_user_cls_instance().engine.stats.base_loads == 1

            listing = sender.send_command("list", team=TEAM, channel=CHANNEL, user="U0ERIK0002")
            assert "maya" in listing.text and "v1" in listing.text
        finally:
            server.stop()
