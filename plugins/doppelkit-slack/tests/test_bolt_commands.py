"""``/doppel`` over HTTP: user resolution, train (background, progress posts), list, switch,
status, forget, help."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bolt_support import TEAM, Bot, start_bot, stop_bot, wait_for_posts, wait_until

from doppelkit.errors import UserError
from doppelkit.models import DatasetReport, Persona
from doppelkit.testing.fakes import EchoEngine
from doppelkit_slack.store import FAILED, TRAINED
from doppelkit_slack.testing import FakeSlack


class FakeSteps:
    """Training steps without a model: publish a version into the engine, or fail."""

    def __init__(self, engine: EchoEngine, *, fail: str | None = None, gate: threading.Event | None = None):
        self.engine, self.fail, self.gate = engine, fail, gate
        self.trained: list[str] = []

    def ingest(self, persona: Persona) -> tuple[int, Any]:
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise UserError(self.fail)
        return 42, "dataset"

    def train(self, persona: Persona, ingested: Any) -> str:
        self.trained.append(persona.id)
        self.engine.versions[(persona.team, persona.id)] = "v1"
        return "v1"


@pytest.fixture
def engine() -> EchoEngine:
    return EchoEngine(versions={(TEAM, "U_ANN"): "v1"})


@pytest.fixture
def bot(tmp_path: Path, slack: FakeSlack, engine: EchoEngine) -> Iterator[Bot]:
    made = start_bot(tmp_path, slack, engine, persona=None)
    yield made
    stop_bot(made)


def command(bot: Bot, text: str, **fields: Any) -> str:
    response = bot.sender.send_command(text, team=TEAM, **fields)
    assert response.status == 200, response.text
    return str(response.json()["text"])


def use_steps(bot: Bot, steps: FakeSteps) -> None:
    bot.runtime.training.steps = lambda: steps


def test_help_and_unknown_verbs(bot: Bot) -> None:
    assert "/doppel train" in command(bot, "help")
    assert "/doppel train" in command(bot, "")
    assert command(bot, "dance").startswith("I don't know `dance`")


@pytest.mark.parametrize("verb", ["train", "switch", "status", "forget"])
def test_unknown_users_get_a_clear_reply(bot: Bot, verb: str) -> None:
    reply = command(bot, f"{verb} Zelda")
    assert "No one in this workspace matches “Zelda”" in reply


@pytest.mark.parametrize("verb", ["train", "switch", "forget"])
def test_ambiguous_names_list_the_candidates(bot: Bot, verb: str) -> None:
    reply = command(bot, f"{verb} alex")
    assert "ambiguous" in reply and "U_AL1" in reply and "U_AL2" in reply


def test_typos_get_suggestions_and_bots_are_refused(bot: Bot) -> None:
    assert "Did you mean Ann (U_ANN)" in command(bot, "train Anm")
    assert "is a bot" in command(bot, "train doppel")


def test_train_runs_in_the_background_and_reports_progress(bot: Bot, engine: EchoEngine) -> None:
    steps = FakeSteps(engine)
    use_steps(bot, steps)
    reply = command(bot, "train <@U_BOB|bob>", channel="C0001")
    assert reply.startswith("Started training Bob")
    store = bot.runtime.parts.store
    assert wait_until(lambda: (r := store.get(TEAM, "U_BOB")) is not None and r.state == TRAINED)
    bot.runtime.training.join(5)
    texts = [p.text for p in wait_for_posts(bot.slack, 3)]
    assert texts == [
        "Reading Bob's messages…",
        "Training Bob on 42 examples… this can take a while.",
        "Bob is ready (v1). Mention me to talk to them.",
    ]
    assert {p.channel for p in bot.slack.posts} == {"C0001"}
    assert store.active_user(TEAM) == "U_BOB"  # the first trained persona becomes active
    assert "Bob (U_BOB): trained, v1 — *active*" in command(bot, "list")


def test_a_second_train_while_one_runs_is_refused(bot: Bot, engine: EchoEngine) -> None:
    gate = threading.Event()
    use_steps(bot, FakeSteps(engine, gate=gate))
    assert command(bot, "train Bob").startswith("Started training Bob")
    assert "already being trained" in command(bot, "train U_BOB")
    assert "being trained right now" in command(bot, "forget Bob")
    gate.set()
    bot.runtime.training.join(5)


def test_a_failed_train_is_recorded_and_reported(bot: Bot, engine: EchoEngine) -> None:
    use_steps(bot, FakeSteps(engine, fail="Bob has no usable messages"))
    command(bot, "train Bob")
    bot.runtime.training.join(5)
    record = bot.runtime.parts.store.get(TEAM, "U_BOB")
    assert record is not None and record.state == FAILED and "no usable messages" in (record.error or "")
    assert wait_for_posts(bot.slack, 2)[-1].text == "Training Bob failed: Bob has no usable messages"
    assert "failed" in command(bot, "status Bob")


def test_the_persona_limit_is_enforced(tmp_path: Path, slack: FakeSlack, engine: EchoEngine) -> None:
    bot = start_bot(tmp_path, slack, engine, persona=None, persona_limit=1)
    try:
        use_steps(bot, FakeSteps(engine))
        command(bot, "train Bob")
        bot.runtime.training.join(5)
        assert "limit is 1" in command(bot, "train Ann")
    finally:
        stop_bot(bot)


def test_switch_needs_a_trained_persona_and_changes_who_answers(bot: Bot) -> None:
    assert "no trained model yet" in command(bot, "switch Bob")
    assert command(bot, "switch Ann") == "Now answering as Ann (v1)."
    assert "Answering as: Ann" in command(bot, "status")
    bot.mention()
    [post] = wait_for_posts(bot.slack, 1)
    assert post.username == "Ann-bot"


def test_forget_deletes_files_under_home_and_store_rows(bot: Bot, tmp_path: Path) -> None:
    home = bot.runtime.parts.home
    dataset = home.datasets(TEAM, "U_ANN")
    adapters = home.adapters(TEAM, "U_ANN") / "v1"
    for directory in (dataset, adapters):
        directory.mkdir(parents=True)
        (directory / "file").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    other = home.datasets(TEAM, "U_BOB")
    other.parent.mkdir(parents=True, exist_ok=True)
    other.symlink_to(outside)  # a link out of home is unlinked, never followed
    command(bot, "switch Ann")
    reply = command(bot, "forget Ann")
    assert reply.startswith("Forgot Ann: deleted dataset, adapters")
    assert not dataset.exists() and not home.adapters(TEAM, "U_ANN").exists()
    assert bot.runtime.parts.store.get(TEAM, "U_ANN") is None
    assert bot.runtime.parts.store.active_user(TEAM) is None
    command(bot, "forget Bob")
    assert not other.is_symlink() and (outside / "keep").is_file()
    assert command(bot, "forget Bob") == "There was nothing to forget about Bob."


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


def test_forget_deletes_training_checkpoints_and_keeps_team_data_while_others_remain(
    bot: Bot, engine: EchoEngine
) -> None:
    home = bot.runtime.parts.home
    engine.versions[(TEAM, "U_BOB")] = "v1"
    checkpoint = home.state / "checkpoints" / TEAM / "U_ANN" / "run1" / "step-0000002" / "state.json"
    corpus = home.cache / "corpus" / TEAM / "abc.jsonl"
    tiny = home.cache / "tiny" / "base1"
    scrape = home.state / "scrape" / TEAM / "plan.json"
    _touch(
        checkpoint,
        corpus,
        tiny / "model.safetensors",
        scrape,
        home.datasets(TEAM, "U_ANN") / "dataset.jsonl",
        home.datasets(TEAM, "U_BOB") / "dataset.jsonl",
    )
    report = DatasetReport(team=TEAM, persona_id="U_BOB", persona_name="Bob")
    (home.datasets(TEAM, "U_BOB") / "dataset.report.json").write_text(report.model_dump_json())
    (tiny / "tiny.json").write_text(json.dumps({"team": TEAM}))
    assert "training checkpoints" in command(bot, "forget Ann")
    assert not (home.state / "checkpoints" / TEAM / "U_ANN").exists()
    assert corpus.exists() and tiny.exists() and scrape.exists(), "Bob's persona still needs them"

    reply = command(bot, "forget Bob")  # the last persona: the team-wide data goes too
    assert "workspace corpus" in reply and "tiny base" in reply and "unfinished scrape" in reply
    assert not corpus.exists() and not tiny.exists() and not scrape.exists()


def test_list_when_empty(bot: Bot, engine: EchoEngine) -> None:
    engine.versions.clear()
    assert "No personas in this workspace yet" in command(bot, "list")


def test_commands_need_a_valid_signature(bot: Bot) -> None:
    assert bot.sender.send_command("list", team=TEAM, signature="v0=" + "1" * 64).status == 401


@pytest.mark.parametrize("with_trigger", [True, False])
def test_a_replayed_signed_command_runs_once(bot: Bot, engine: EchoEngine, with_trigger: bool) -> None:
    import time
    from urllib.parse import urlencode

    from doppelkit_slack.testing.events import slash_command

    steps = FakeSteps(engine)
    use_steps(bot, steps)
    fields = slash_command("train Bob", team=TEAM, channel="C0001")
    if not with_trigger:
        del fields["trigger_id"]  # then the signed request itself is the key
    body, stamp = urlencode(fields).encode(), str(int(time.time()))
    form = "application/x-www-form-urlencoded"
    first = bot.sender.post(body, content_type=form, timestamp=stamp)
    assert first.status == 200 and first.json()["text"].startswith("Started training Bob")
    bot.runtime.training.join(5)
    for _ in range(2):  # an attacker replays it within the 300 s the signature stays fresh
        again = bot.sender.post(body, content_type=form, timestamp=stamp)
        assert again.status == 200 and again.body == b""
    bot.runtime.training.join(5)
    assert steps.trained == ["U_BOB"]
    # A new request (a fresh trigger and signature) still runs.
    assert "Bob" in command(bot, "status Bob")


def test_interactions_are_keyed_by_their_trigger() -> None:
    from slack_bolt.request import BoltRequest

    from doppelkit_slack.bolt.replay import replay_key

    request = BoltRequest(body="payload=%7B%7D", headers={})
    action = {"type": "block_actions", "team": {"id": TEAM}, "trigger_id": "tr.1"}
    assert replay_key(action, request) == f"trigger:{TEAM}:tr.1"
    assert replay_key({"type": "block_actions", "team": {"id": TEAM}}, request).startswith("request:")
    assert replay_key({"type": "event_callback", "event": {}}, request) is None


def test_a_failed_train_does_not_keep_the_forgotten_persons_words(bot: Bot, engine: EchoEngine) -> None:
    """Bob is the only trained persona; Ann's train failed. Forgetting Bob is forgetting the
    workspace's last persona: the corpus and tiny base (everyone's words, Bob's included) go."""
    home = bot.runtime.parts.home
    engine.versions.clear()
    engine.versions[(TEAM, "U_BOB")] = "v1"
    use_steps(bot, FakeSteps(engine, fail="Ann has no usable messages"))
    command(bot, "train Ann")
    bot.runtime.training.join(5)
    assert bot.runtime.parts.store.get(TEAM, "U_ANN").state == FAILED  # type: ignore[union-attr]
    corpus = home.cache / "corpus" / TEAM / "abc.jsonl"
    tiny = home.cache / "tiny" / "base1"
    _touch(corpus, tiny / "model.safetensors", home.datasets(TEAM, "U_BOB") / "dataset.jsonl")
    (tiny / "tiny.json").write_text(json.dumps({"team": TEAM}))
    home.datasets(TEAM, "U_ANN").mkdir(parents=True, exist_ok=True)  # as an older failed ingest left it
    engine.versions.clear()  # Bob's adapter is what forget deletes; the engine serves nothing then
    reply = command(bot, "forget Bob")
    assert "workspace corpus" in reply and "tiny base" in reply, reply
    assert not corpus.exists() and not tiny.exists()


# --- who may run what (frontend.permissions) ------------------------------------------------------


@pytest.mark.parametrize("verb", ["train", "switch", "forget"])
def test_by_default_a_member_may_not_act_on_someone_else(bot: Bot, engine: EchoEngine, verb: str) -> None:
    steps = FakeSteps(engine)
    use_steps(bot, steps)
    home = bot.runtime.parts.home
    _touch(home.datasets(TEAM, "U_ANN") / "dataset.jsonl")
    reply = command(bot, f"{verb} Ann", user="U_BOB")
    assert reply.startswith(
        f"Only the person themself, workspace admins or listed people may `/doppel {verb}`"
    )
    bot.runtime.training.join(5)
    assert steps.trained == [] and bot.runtime.parts.store.active_user(TEAM) is None
    assert home.datasets(TEAM, "U_ANN").exists()


def test_by_default_the_person_and_admins_may(bot: Bot, engine: EchoEngine) -> None:
    steps = FakeSteps(engine)
    use_steps(bot, steps)
    assert command(bot, "train Bob", user="U_BOB").startswith("Started training Bob")  # themself
    bot.runtime.training.join(5)
    assert command(bot, "switch Ann").startswith("Now answering as Ann")  # Olga, an admin
    assert command(bot, "forget Bob", user="U_BOB").startswith("Forgot Bob")
    assert steps.trained == ["U_BOB"]
    # Reading is open to everyone.
    assert "Ann (U_ANN)" in command(bot, "list", user="U_AL1")
    assert "Answering as: Ann" in command(bot, "status", user="U_AL1")


def test_permissions_are_configurable(tmp_path: Path, slack: FakeSlack, engine: EchoEngine) -> None:
    permissions = {"train": ["allowed"], "switch": ["anyone"], "forget": ["admins"], "allowed": ["U_AL1"]}
    bot = start_bot(tmp_path, slack, engine, persona=None, permissions=permissions)
    try:
        use_steps(bot, FakeSteps(engine))
        assert command(bot, "train Bob", user="U_BOB").startswith("Only listed people may")  # not self
        assert command(bot, "train Bob", user="U_AL1").startswith("Started training Bob")
        bot.runtime.training.join(5)
        assert command(bot, "switch Ann", user="U_BOB").startswith("Now answering as Ann")
        assert command(bot, "forget Ann", user="U_ANN").startswith("Only workspace admins may")
        assert command(bot, "forget Ann").startswith("Forgot Ann")  # Olga
    finally:
        stop_bot(bot)


def test_permissions_config_is_validated() -> None:
    from pydantic import ValidationError

    from doppelkit_slack.bolt.config import BoltConfig

    with pytest.raises(ValidationError):
        BoltConfig(permissions={"train": ["everyone"]})
    with pytest.raises(ValidationError):
        BoltConfig(permissions={"dance": ["anyone"]})


def test_command_acks_do_not_wait_for_a_slow_slack(bot: Bot) -> None:
    import time

    assert wait_until(lambda: bot.slack.count("users.list") >= 1)  # warmed at start-up
    bot.runtime.parts.replier.wait_idle()
    bot.slack.latency = 2.0  # every Web API call takes 2 s from now on
    bot.runtime.parts.commands.directory.ttl = 0.0  # and the cached members are stale
    for text in ("status Ann", "switch Ann", "list"):
        started = time.perf_counter()
        reply = command(bot, text)
        assert time.perf_counter() - started < 1.0, f"/doppel {text} waited for Slack"
        assert "Ann" in reply
    bot.slack.latency = 0.0


@pytest.mark.parametrize(("field", "value"), [("channel", "../../etc"), ("user", "U" * 300), ("user", "")])
def test_a_command_whose_channel_or_user_is_not_a_slack_id_does_nothing(
    bot: Bot, engine: EchoEngine, field: str, value: str
) -> None:
    steps = FakeSteps(engine)
    use_steps(bot, steps)
    reply = command(bot, "train Bob", **{field: value})
    assert reply.startswith("This command's channel or user is not a Slack ID")
    bot.runtime.training.join(5)
    assert steps.trained == [] and bot.runtime.parts.store.get(TEAM, "U_BOB") is None
