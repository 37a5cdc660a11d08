"""The persona store on SQLite (always) and PostgreSQL (when DOPPELKIT_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from doppelkit_slack.store import (
    FAILED,
    SCRAPING,
    TRAINED,
    TRAINING,
    InvalidTransition,
    PersonaBusy,
    PersonaLimitReached,
    PersonaStore,
    TrainingLimitReached,
    default_url,
)

POSTGRES_URL = os.environ.get("DOPPELKIT_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PersonaStore]:
    if request.param == "sqlite-file":
        made = PersonaStore(default_url(tmp_path / "state"))
    elif request.param == "sqlite-memory":
        made = PersonaStore("sqlite://")
    else:
        if not POSTGRES_URL:
            pytest.skip("set DOPPELKIT_TEST_POSTGRES_URL to run the store tests on PostgreSQL")
        schema = f"doppel_test_{uuid.uuid4().hex[:12]}"  # a private schema: parallel runs never collide
        engine = sa.create_engine(POSTGRES_URL)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        made = PersonaStore(POSTGRES_URL, schema=schema, engine=engine)
    made.create_schema()
    made.create_schema()  # idempotent: the bot creates the schema on every start
    yield made
    if request.param == "postgres":
        with made.engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{made.metadata.schema}" CASCADE'))
    made.dispose()


def test_state_machine_happy_path(store: PersonaStore) -> None:
    record = store.begin_training("T1", "U1", "Ann", requested_by="U9")
    assert (record.state, record.name, record.requested_by) == (SCRAPING, "Ann", "U9")
    assert store.set_state("T1", "U1", TRAINING).state == TRAINING
    done = store.set_state("T1", "U1", TRAINED, version="v1")
    assert (done.state, done.version) == (TRAINED, "v1")
    assert done.updated_at >= record.created_at
    # Retraining a finished persona restarts it at scraping, keeping the last version.
    again = store.begin_training("T1", "U1", "Ann")
    assert (again.state, again.version) == (SCRAPING, "v1")


def test_invalid_transitions_are_refused(store: PersonaStore) -> None:
    store.begin_training("T1", "U1", "Ann")
    with pytest.raises(InvalidTransition):
        store.set_state("T1", "U1", TRAINED)  # scraping → trained skips training
    with pytest.raises(InvalidTransition):
        store.set_state("T1", "U1", "bogus")
    with pytest.raises(InvalidTransition):
        store.set_state("T1", "U404", TRAINING)
    store.set_state("T1", "U1", FAILED, error="no messages")
    assert store.get("T1", "U1").error == "no messages"  # type: ignore[union-attr]


def test_a_running_training_cannot_be_started_twice(store: PersonaStore) -> None:
    store.begin_training("T1", "U1", "Ann")
    with pytest.raises(PersonaBusy):
        store.begin_training("T1", "U1", "Ann")
    store.set_state("T1", "U1", TRAINING)
    with pytest.raises(PersonaBusy):
        store.begin_training("T1", "U1", "Ann")


def test_concurrent_train_of_the_same_user_has_one_winner(store: PersonaStore) -> None:
    barrier = threading.Barrier(8)

    def attempt(_: int) -> bool:
        barrier.wait()
        try:
            store.begin_training("T1", "U1", "Ann")
        except PersonaBusy:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert results.count(True) == 1
    assert len(store.list("T1")) == 1


def test_persona_limit_per_team(store: PersonaStore) -> None:
    store.begin_training("T1", "U1", "Ann", limit=2)
    store.begin_training("T1", "U2", "Bob", limit=2)
    with pytest.raises(PersonaLimitReached):
        store.begin_training("T1", "U3", "Cid", limit=2)
    store.begin_training("T2", "U3", "Cid", limit=2)  # other teams are counted apart


@pytest.mark.parametrize("limits", [{"limit": 1}, {"training_limit": 1}])
def test_concurrent_trains_of_different_people_never_pass_a_team_limit(
    store: PersonaStore, limits: dict[str, int]
) -> None:
    # Counted and claimed in one step per team: two people claimed at once cannot both see
    # room for one more (a count before the claim let both through).
    barrier = threading.Barrier(6)

    def attempt(number: int) -> bool:
        barrier.wait()
        try:
            store.begin_training("T1", f"U{number}", f"Person {number}", **limits)
        except (PersonaLimitReached, TrainingLimitReached):
            return False
        return True

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(attempt, range(6)))
    assert results.count(True) == 1
    assert len(store.list("T1")) == 1


def test_training_limit_counts_running_trainings_of_others_only(store: PersonaStore) -> None:
    store.begin_training("T1", "U1", "Ann", training_limit=1)
    with pytest.raises(TrainingLimitReached, match="Ann"):
        store.begin_training("T1", "U2", "Bob", training_limit=1)
    store.begin_training("T2", "U2", "Bob", training_limit=1)  # other teams are counted apart
    store.set_state("T1", "U1", FAILED, error="x")
    store.begin_training("T1", "U2", "Bob", training_limit=1)  # a finished run frees its place


def test_active_persona_per_team_and_forget(store: PersonaStore) -> None:
    assert store.active_user("T1") is None
    store.upsert_trained("T1", "U1", "Ann", "v1")
    store.set_active("T1", "U1")
    store.set_active("T2", "U2")
    assert store.active_user("T1") == "U1"
    store.set_active("T1", "U1")
    assert store.active_user("T1") == "U1"
    assert store.delete("T1", "U1") is True
    assert store.active_user("T1") is None and store.get("T1", "U1") is None
    assert store.delete("T1", "U1") is False
    assert store.active_user("T2") == "U2"
    store.delete_team("T2")
    assert store.active_user("T2") is None


def test_upsert_trained_leaves_a_running_training_alone(store: PersonaStore) -> None:
    store.begin_training("T1", "U1", "Ann")
    assert store.upsert_trained("T1", "U1", "Ann", "v7").state == SCRAPING
    store.upsert_trained("T1", "U2", "Bob", "v2")
    assert [(r.user_id, r.state, r.version) for r in store.list("T1")] == [
        ("U1", SCRAPING, None),
        ("U2", TRAINED, "v2"),
    ]


def test_interrupted_runs_fail_on_start(store: PersonaStore) -> None:
    store.begin_training("T1", "U1", "Ann")
    assert store.fail_interrupted() == 1
    assert store.get("T1", "U1").state == FAILED  # type: ignore[union-attr]


def test_runs_elsewhere_fail_only_once_they_cannot_be_running(store: PersonaStore) -> None:
    from datetime import timedelta

    store.begin_training("T1", "U1", "Ann")
    assert store.fail_interrupted("lost", older_than=timedelta(hours=1)) == 0
    assert store.get("T1", "U1").state == SCRAPING  # type: ignore[union-attr]
    assert store.fail_interrupted("lost", older_than=timedelta(seconds=-1)) == 1
    record = store.get("T1", "U1")
    assert record is not None and (record.state, record.error) == (FAILED, "lost")


def test_claims_are_insert_or_ignore_under_concurrency(store: PersonaStore) -> None:
    barrier = threading.Barrier(6)

    def attempt(_: int) -> bool:
        barrier.wait()
        return store.claim("event:Ev1")

    with ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(attempt, range(6))) == [False] * 5 + [True]
    assert store.claim("event:Ev2") is True
    assert store.prune_claims() == 0


def _job_values(key: str) -> dict[str, object]:
    return {
        "key": key, "kind": "reply", "team": "T1", "channel": "C1", "ts": "1.000001", "thread_ts": "1.000001",
        "user_id": "U1", "text": "hi", "bot_user_id": "UB", "bot_id": "BB",
    }  # fmt: skip


def test_replies_per_minute_are_counted_per_team_in_the_store(store: PersonaStore) -> None:
    """Every bot process on the store shares the limit: the count is the store's, not a
    process's. Over it, the first mention in the minute becomes a notice, later ones nothing."""
    from datetime import timedelta

    start = datetime_now()

    def add(key: str, team: str = "T1", after_s: float = 0.0) -> str | None:
        values = {**_job_values(key), "team": team, "created_at": start + timedelta(seconds=after_s)}
        return store.add_job(values, replies_per_minute=2)

    assert [add("T1:C1:1.1"), add("T1:C1:1.2")] == ["reply", "reply"]
    assert add("T1:C1:1.3") == "limit" and add("T1:C1:1.4") == "limited"
    assert add("T2:C1:1.1", team="T2") == "reply", "another workspace has its own count"
    assert add("T1:C1:1.2") is None, "a redelivery is still a duplicate"
    assert store.claim_job("T1:C1:1.4", "w", timedelta(minutes=1)) is None, "nothing to post"
    claimable = sorted(key for key, _ in store.claimable_jobs(queued_before=datetime_now()))
    assert claimable == ["T1:C1:1.1", "T1:C1:1.2", "T1:C1:1.3", "T2:C1:1.1"]
    assert add("T1:C1:2.1", after_s=61) == "reply", "a minute later the old replies no longer count"
    busy = {**_job_values("T1:C1:2.2"), "kind": "busy"}
    assert store.add_job(busy, replies_per_minute=2) == "busy", "a busy notice is not a reply"


def test_a_store_made_by_an_earlier_version_gets_the_new_index(store: PersonaStore) -> None:
    """create_all adds indexes only with a new table: the team/kind/time index the reply limit
    counts with must also reach a jobs table made before it existed."""
    name = "ix_doppel_reply_jobs_team_recent"
    schema = store.metadata.schema

    def indexes() -> set[str]:
        return {
            str(i["name"]) for i in sa.inspect(store.engine).get_indexes("doppel_reply_jobs", schema=schema)
        }

    assert name in indexes()
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"DROP INDEX {f'{schema}.' if schema else ''}{name}"))
    assert name not in indexes()
    store.create_schema()
    assert name in indexes()


def test_reply_jobs_are_recorded_once_claimed_once_and_taken_over_after_the_lease(
    store: PersonaStore,
) -> None:
    from datetime import timedelta

    assert store.add_job(_job_values("T1:C1:1.000001")) == "reply"
    assert store.add_job(_job_values("T1:C1:1.000001")) is None  # a retry finds it taken
    with ThreadPoolExecutor(8) as pool:
        claims = list(
            pool.map(lambda i: store.claim_job("T1:C1:1.000001", f"w{i}", timedelta(minutes=1)), range(8))
        )
    [claimed] = [c for c in claims if c is not None]
    owner = next(f"w{i}" for i, c in enumerate(claims) if c is not None)
    assert claimed.attempts == 1 and claimed.reply is None
    assert store.update_job(claimed.key, owner, reply={"messages": ["a", "b"]}, posted=1)
    assert not store.update_job(claimed.key, "someone-else", posted=2)  # only the holder writes
    assert store.claim_job(claimed.key, "late", timedelta(minutes=1)) is None  # the lease holds
    store.renew_leases(owner, timedelta(seconds=-1))  # the holder died: its lease runs out
    assert [key for key, _ in store.claimable_jobs(queued_before=datetime_now())] == [claimed.key]
    again = store.claim_job(claimed.key, "next", timedelta(minutes=1))
    assert again is not None and again.attempts == 2 and again.posted == 1
    assert again.reply == {"messages": ["a", "b"]}
    assert store.update_job(claimed.key, "next", state="done")
    assert store.claim_job(claimed.key, "third", timedelta(minutes=1)) is None
    assert store.unfinished_jobs() == 0


def datetime_now() -> datetime:
    from doppelkit_slack.store import now

    return now()
