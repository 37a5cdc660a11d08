"""Several bot processes on one database: the schema is created once, safely, whoever starts
first; two concurrent ``/doppel train`` of one person make one training. On SQLite always, on
PostgreSQL when DOPPELKIT_TEST_POSTGRES_URL is set (CI)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from bolt_support import ADMIN, TEAM, Bot, database, start_bot, stop_bot
from test_bolt_commands import FakeSteps, use_steps

from doppelkit.testing.fakes import EchoEngine
from doppelkit_slack.store import PersonaStore, default_url
from doppelkit_slack.testing import FakeSlack

STARTERS = 4
TABLES = {
    "doppel_personas", "doppel_consents", "slack_installations", "slack_bots", "slack_oauth_states",
}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param) as made:
        yield made or default_url(tmp_path / "state")


def start_like_a_bot(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:  # type: ignore[name-defined]
    """What a starting bot does to the database: every table it needs, created if missing."""
    from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
    from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

    from doppelkit_slack.bolt.consent import ConsentStore

    store = PersonaStore(url)
    installs = SQLAlchemyInstallationStore(client_id="1111.2222", engine=store.engine)
    states = SQLAlchemyOAuthStateStore(expiration_seconds=600, engine=store.engine)
    barrier.wait(30)  # all at once
    store.create_schema()
    ConsentStore(store).create_schema()
    store.create_tables(installs.metadata)
    store.create_tables(states.metadata)
    store.dispose()


def test_processes_starting_at_once_create_the_schema_once(url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(STARTERS)
    processes = [context.Process(target=start_like_a_bot, args=(url, barrier)) for _ in range(STARTERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * STARTERS, "no start failed on a table another made"
    engine = sa.create_engine(url)
    try:
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


@pytest.fixture
def bot(url: str, tmp_path: Path, slack: FakeSlack) -> Iterator[Bot]:
    engine = EchoEngine()
    made = start_bot(tmp_path, slack, engine, persona=None, store_url=url)
    yield made
    stop_bot(made)


def test_two_concurrent_trains_of_one_person_make_one_training(bot: Bot) -> None:
    gate = threading.Event()
    steps = FakeSteps(bot.engine, gate=gate)
    use_steps(bot, steps)
    barrier = threading.Barrier(2)

    def train(_: int) -> str:
        barrier.wait(10)
        response = bot.sender.send_command("train <@U_BOB>", team=TEAM, user=ADMIN)
        return str(response.json()["text"])

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(train, range(2)))
    gate.set()
    bot.runtime.training.join(5)
    assert sum(r.startswith("Started training Bob") for r in replies) == 1, replies
    assert sum("already being trained" in r for r in replies) == 1, replies
    assert steps.trained == ["U_BOB"]
