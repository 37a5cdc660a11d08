"""The persona store: which personas a workspace has, their training state, and dedup claims.

SQLAlchemy 2 Core over any URL (``frontend.store_url``); by default a SQLite file under ``home/state``.
Three tables:

* ``doppel_personas`` — one row per (team, user) with a state machine
  ``scraping → training → trained | failed`` and timestamps. The unique (team, user) constraint
  is what makes two concurrent ``/doppel train`` of one person impossible: only one insert (or
  one conditional update of a finished row) can win.
* ``doppel_active_personas`` — the persona that answers mentions in each team.
* ``doppel_processed_events`` — dedup claims (slash commands, interactions): inserting a key
  that exists fails, so exactly one delivery gets to run.
* ``doppel_reply_jobs`` — one row per message the bot must answer (its key is the message:
  team, channel, ts, so a retry, a concurrent duplicate or the app_mention/message double
  delivery cannot add a second). A worker claims a job with a lease it keeps renewing; the row
  holds the reply once generated and how many of its parts were posted, so after a crash the
  next worker posts the rest, never a part twice (:mod:`doppelkit_slack.bolt.jobs`).

Imported only when the bolt frontend starts (SQLAlchemy is not needed for ``doppelkit --help``).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.pool import StaticPool

from doppelkit.errors import UserError

SCRAPING, TRAINING, TRAINED, FAILED = "scraping", "training", "trained", "failed"
# Reply jobs: queued → running → done | failed (a running job whose lease ran out is claimable).
JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED = "queued", "running", "done", "failed"
JOB_STATES = (JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED)
# What a reply job posts: the persona's reply, a "busy" notice (queue full), the notice that the
# workspace is over its replies per minute, or nothing (over the limit, noticed already: done).
KIND_REPLY, KIND_BUSY, KIND_LIMIT, KIND_LIMITED = "reply", "busy", "limit", "limited"
REPLY_WINDOW = timedelta(minutes=1)
STATES = (SCRAPING, TRAINING, TRAINED, FAILED)
FINISHED = (TRAINED, FAILED)
# The only moves the state machine allows; a new ``train`` restarts a finished row at SCRAPING.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    SCRAPING: (TRAINING, FAILED),
    TRAINING: (TRAINED, FAILED),
    TRAINED: (SCRAPING,),
    FAILED: (SCRAPING,),
}
DEFAULT_DB_NAME = "doppelkit.db"
SCHEMA_LOCK_KEY = 0x646F7070656C  # "doppel": the advisory lock held while creating tables
SCHEMA_ATTEMPTS = 5


class StoreError(UserError):
    """A store operation the caller asked for is not allowed right now."""


class PersonaBusy(StoreError):
    """The persona is already being scraped or trained."""


class PersonaLimitReached(StoreError):
    """The team already has as many personas as ``frontend.persona_limit`` allows."""


class TrainingLimitReached(StoreError):
    """The workspace already runs as many trainings as ``frontend.training_limit`` allows."""


class InvalidTransition(StoreError):
    """A state change the state machine does not allow (e.g. ``trained → training``)."""


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PersonaRecord:
    team: str
    user_id: str
    name: str
    state: str
    version: str | None
    error: str | None
    requested_by: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JobRecord:
    """A reply job as stored: the message to answer and how far the answer got."""

    key: str
    kind: str  # "reply", "busy" (the queue was full), "limit" (over replies per minute), "limited"
    team: str
    channel: str
    ts: str
    thread_ts: str
    user: str
    text: str
    bot_user_id: str | None
    bot_id: str | None
    state: str
    reply: dict[str, Any] | None  # the composed answer (messages, identity), once generated
    posted: int  # how many of its messages are in Slack
    attempts: int  # claims so far (> 1: resumed after a crash or a lost lease)
    error: str | None
    created_at: datetime


def default_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / DEFAULT_DB_NAME}"


def build_engine(url: str) -> sa.Engine:
    """An engine safe to share across Bolt's listener threads."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        # One connection shared by every thread, or each thread would see its own empty DB.
        return sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers proceed while a writer holds the lock (Bolt answers from many threads).
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; no fsync per commit
        cursor.close()

    return engine


def _create_all(conn: sa.Connection, metadata: sa.MetaData) -> None:
    """Missing tables, and missing indexes of tables made by an earlier version (``create_all``
    adds indexes only with a new table)."""
    metadata.create_all(conn)
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def _lock_team(conn: sa.Connection, team: str) -> None:
    """One transaction per team at a time until this one ends, where per-team limits are
    counted (PostgreSQL; SQLite has one writer at a time anyway)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:team))"), {"team": team})


class PersonaStore:
    """Thread-safe access to the store; every method is one short transaction."""

    def __init__(self, url: str, *, schema: str | None = None, engine: sa.Engine | None = None) -> None:
        self.url = url
        self.engine = engine or build_engine(url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        # SQLite allows one writer; serialising writes here avoids "database is locked" storms.
        self._write_lock = threading.Lock() if self._sqlite else None
        self.metadata = sa.MetaData(schema=schema)
        ts = sa.DateTime(timezone=True)
        self.personas = sa.Table(
            "doppel_personas",
            self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("team", sa.String(64), nullable=False),
            sa.Column("user_id", sa.String(64), nullable=False),
            sa.Column("name", sa.String(255), nullable=False, default=""),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("version", sa.String(32)),
            sa.Column("error", sa.Text),
            sa.Column("requested_by", sa.String(64)),
            sa.Column("created_at", ts, nullable=False),
            sa.Column("updated_at", ts, nullable=False),
            sa.UniqueConstraint("team", "user_id", name="uq_doppel_personas_team_user"),
            sa.CheckConstraint(f"state IN {STATES!r}", name="ck_doppel_personas_state"),
        )
        self.active = sa.Table(
            "doppel_active_personas",
            self.metadata,
            sa.Column("team", sa.String(64), primary_key=True),
            sa.Column("user_id", sa.String(64), nullable=False),
            sa.Column("updated_at", ts, nullable=False),
        )
        self.events = sa.Table(
            "doppel_processed_events",
            self.metadata,
            sa.Column("key", sa.String(255), primary_key=True),
            sa.Column("created_at", ts, nullable=False, index=True),
        )
        self.jobs = sa.Table(
            "doppel_reply_jobs",
            self.metadata,
            sa.Column("key", sa.String(255), primary_key=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("team", sa.String(64), nullable=False),
            sa.Column("channel", sa.String(64), nullable=False),
            sa.Column("ts", sa.String(32), nullable=False),
            sa.Column("thread_ts", sa.String(32), nullable=False),
            sa.Column("user_id", sa.String(64), nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("bot_user_id", sa.String(64)),
            sa.Column("bot_id", sa.String(64)),
            sa.Column("state", sa.String(16), nullable=False, index=True),
            sa.Column("reply", sa.Text),  # JSON, once generated
            sa.Column("posted", sa.Integer, nullable=False, default=0),
            sa.Column("attempts", sa.Integer, nullable=False, default=0),
            sa.Column("owner", sa.String(128)),
            sa.Column("lease_until", ts),
            sa.Column("error", sa.Text),
            sa.Column("created_at", ts, nullable=False),
            sa.Column("updated_at", ts, nullable=False),
            sa.CheckConstraint(f"state IN {JOB_STATES!r}", name="ck_doppel_reply_jobs_state"),
            # each reply's count of its team's replies in the last minute (replies_per_minute)
            sa.Index("ix_doppel_reply_jobs_team_recent", "team", "kind", "created_at"),
        )

    # --- plumbing ---------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create the tables if they do not exist (called on start)."""
        self.create_tables(self.metadata)

    def create_tables(self, metadata: sa.MetaData) -> None:
        """``metadata``'s tables if missing, safe when several processes start at once.

        ``create_all`` checks, then creates: two processes can both see a table missing. On
        PostgreSQL a transaction-scoped advisory lock makes the check-and-create one at a time
        (the loser then sees the tables); elsewhere a lost race ("already exists") is retried,
        and the retry's check finds the table.
        """
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
                _create_all(conn, metadata)
            return
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    _create_all(conn, metadata)
                return
            except (OperationalError, ProgrammingError):
                # Another process created a table first ("already exists"), held the lock, or
                # changed the schema under this check: check again. A real fault persists.
                if attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def dispose(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One write transaction; SQLite writers are serialised in-process."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _row(self, row: sa.Row[tuple[object, ...]] | None) -> PersonaRecord | None:
        if row is None:
            return None
        m = row._mapping
        return PersonaRecord(
            team=m["team"],
            user_id=m["user_id"],
            name=m["name"],
            state=m["state"],
            version=m["version"],
            error=m["error"],
            requested_by=m["requested_by"],
            created_at=_aware(m["created_at"]),
            updated_at=_aware(m["updated_at"]),
        )

    def _where(self, team: str, user_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(self.personas.c.team == team, self.personas.c.user_id == user_id)

    # --- personas ---------------------------------------------------------------------------

    def get(self, team: str, user_id: str) -> PersonaRecord | None:
        with self.engine.connect() as conn:
            return self._row(conn.execute(sa.select(self.personas).where(self._where(team, user_id))).first())

    def list(self, team: str) -> list[PersonaRecord]:
        query = sa.select(self.personas).where(self.personas.c.team == team).order_by(self.personas.c.name)
        with self.engine.connect() as conn:
            return [r for r in (self._row(row) for row in conn.execute(query)) if r is not None]

    def begin_training(
        self,
        team: str,
        user_id: str,
        name: str,
        *,
        requested_by: str | None = None,
        limit: int | None = None,
        training_limit: int | None = None,
    ) -> PersonaRecord:
        """Claim (team, user) for a new training run, in state ``scraping``.

        Raises :class:`PersonaBusy` while another run holds it, :class:`PersonaLimitReached`
        when the team has ``limit`` personas and :class:`TrainingLimitReached` when it runs
        ``training_limit`` trainings already. Safe under concurrency: the limits are counted in
        the claiming transaction, one claim per team at a time (SQLite serialises writers; on
        PostgreSQL a per-team advisory lock does), the unique constraint lets one insert win,
        and restarting a finished row is a conditional update only one caller can make.
        """
        stamp = now()
        with self._write() as conn:
            _lock_team(conn, team)
            if training_limit is not None:
                running = (
                    conn.execute(
                        sa.select(self.personas.c.name).where(
                            self.personas.c.team == team,
                            self.personas.c.state.in_((SCRAPING, TRAINING)),
                            self.personas.c.user_id != user_id,
                        )
                    )
                    .scalars()
                    .all()
                )
                if len(running) >= training_limit:
                    raise TrainingLimitReached(
                        f"This workspace already has {len(running)} training(s) running (the limit is "
                        f"{training_limit}): {', '.join(running)}. Try again when one has finished."
                    )
            existing = conn.execute(
                sa.select(self.personas.c.state).where(self._where(team, user_id))
            ).first()
            if existing is None:
                if limit is not None:
                    count = conn.execute(
                        sa.select(sa.func.count())
                        .select_from(self.personas)
                        .where(self.personas.c.team == team)
                    ).scalar_one()
                    if count >= limit:
                        raise PersonaLimitReached(
                            f"This workspace already has {count} personas (the limit is {limit}); "
                            "`/doppel forget` one first."
                        )
                inserted = self._insert_new(
                    conn, team=team, user_id=user_id, name=name, state=SCRAPING,
                    requested_by=requested_by, created_at=stamp, updated_at=stamp,
                )  # fmt: skip
                if not inserted:
                    raise PersonaBusy(f"{name} is already being trained.")
            else:
                claimed = conn.execute(
                    self.personas.update()
                    .where(self._where(team, user_id), self.personas.c.state.in_(FINISHED))
                    .values(
                        state=SCRAPING, name=name, error=None, requested_by=requested_by, updated_at=stamp
                    )
                ).rowcount
                if claimed != 1:
                    raise PersonaBusy(f"{name} is already being trained (state: {existing.state}).")
            row = conn.execute(sa.select(self.personas).where(self._where(team, user_id))).first()
        record = self._row(row)
        assert record is not None
        return record

    def set_state(
        self, team: str, user_id: str, state: str, *, version: str | None = None, error: str | None = None
    ) -> PersonaRecord:
        """Move a persona along the state machine; anything else raises InvalidTransition."""
        if state not in STATES:
            raise InvalidTransition(f"unknown state {state!r}; states are {', '.join(STATES)}")
        allowed_from = [s for s, targets in TRANSITIONS.items() if state in targets]
        values: dict[str, object] = {"state": state, "updated_at": now(), "error": error}
        if version is not None:
            values["version"] = version
        with self._write() as conn:
            changed = conn.execute(
                self.personas.update()
                .where(self._where(team, user_id), self.personas.c.state.in_(allowed_from))
                .values(**values)
            ).rowcount
            row = conn.execute(sa.select(self.personas).where(self._where(team, user_id))).first()
        record = self._row(row)
        if record is None:
            raise InvalidTransition(f"no persona {user_id} in team {team}")
        if changed != 1:
            raise InvalidTransition(f"cannot move {user_id} from {record.state} to {state}")
        return record

    def upsert_trained(self, team: str, user_id: str, name: str, version: str | None) -> PersonaRecord:
        """Record a persona trained outside the bot (``doppelkit train``) as ``trained``."""
        stamp = now()
        with self._write() as conn:
            updated = conn.execute(
                self.personas.update()
                .where(self._where(team, user_id), self.personas.c.state.in_(FINISHED))
                .values(state=TRAINED, name=name, version=version, error=None, updated_at=stamp)
            ).rowcount
            if not updated:
                # Not inserted: a training run holds the row; leave that run's state alone.
                self._insert_new(
                    conn, team=team, user_id=user_id, name=name, state=TRAINED, version=version,
                    created_at=stamp, updated_at=stamp,
                )  # fmt: skip
            row = conn.execute(sa.select(self.personas).where(self._where(team, user_id))).first()
        record = self._row(row)
        assert record is not None
        return record

    def _insert_new(self, conn: sa.Connection, **values: object) -> bool:
        """Insert a persona row unless (team, user) exists; False when the unique key refused it.

        The savepoint keeps the surrounding transaction usable after the refusal (PostgreSQL
        aborts a transaction on an integrity error otherwise).
        """
        try:
            with conn.begin_nested():
                conn.execute(self.personas.insert().values(**values))
        except IntegrityError:
            return False
        return True

    def fail_interrupted(
        self,
        reason: str = "interrupted: the bot restarted during training",
        *,
        older_than: timedelta | None = None,
    ) -> int:
        """Mark runs a previous process left in ``scraping``/``training`` as failed (on start).

        ``older_than``: only runs not updated for that long. When training runs elsewhere (a
        backend spawned it), a run in progress is not the bot's to fail; one that has not moved
        for longer than any run may last is dead."""
        condition: sa.ColumnElement[bool] = self.personas.c.state.in_((SCRAPING, TRAINING))
        if older_than is not None:
            condition = sa.and_(condition, self.personas.c.updated_at < now() - older_than)
        with self._write() as conn:
            return conn.execute(
                self.personas.update().where(condition).values(state=FAILED, error=reason, updated_at=now())
            ).rowcount

    def delete(self, team: str, user_id: str) -> bool:
        """Forget a persona: its row and, if it was active, the team's active choice."""
        with self._write() as conn:
            conn.execute(
                self.active.delete().where(self.active.c.team == team, self.active.c.user_id == user_id)
            )
            return bool(conn.execute(self.personas.delete().where(self._where(team, user_id))).rowcount)

    def delete_team(self, team: str) -> None:
        """Forget everything about a workspace (app uninstalled, tokens revoked)."""
        with self._write() as conn:
            conn.execute(self.active.delete().where(self.active.c.team == team))
            conn.execute(self.personas.delete().where(self.personas.c.team == team))
            conn.execute(self.jobs.delete().where(self.jobs.c.team == team))  # messages' text

    # --- the active persona ---------------------------------------------------------------

    def set_active(self, team: str, user_id: str) -> None:
        with self._write() as conn:
            updated = conn.execute(
                self.active.update()
                .where(self.active.c.team == team)
                .values(user_id=user_id, updated_at=now())
            ).rowcount
            if not updated:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            self.active.insert().values(team=team, user_id=user_id, updated_at=now())
                        )
                except IntegrityError:  # a concurrent switch inserted first: last writer wins
                    conn.execute(
                        self.active.update()
                        .where(self.active.c.team == team)
                        .values(user_id=user_id, updated_at=now())
                    )

    def active_user(self, team: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(self.active.c.user_id).where(self.active.c.team == team)).scalar()

    # --- dedup claims -------------------------------------------------------------------------

    def claim(self, key: str) -> bool:
        """Insert-or-ignore ``key``: True for the first caller only, across threads and processes."""
        try:
            with self._write() as conn:
                conn.execute(self.events.insert().values(key=key[:255], created_at=now()))
        except IntegrityError:
            return False
        return True

    def prune_claims(self, older_than: timedelta = timedelta(days=1)) -> int:
        """Drop claims older than Slack's retry window (retries stop after ~5 minutes), and
        finished reply jobs as old."""
        with self._write() as conn:
            conn.execute(
                self.jobs.delete().where(
                    self.jobs.c.state.in_((JOB_DONE, JOB_FAILED)), self.jobs.c.updated_at < now() - older_than
                )
            )
            return conn.execute(
                self.events.delete().where(self.events.c.created_at < now() - older_than)
            ).rowcount

    # --- reply jobs -----------------------------------------------------------------------------

    def add_job(self, values: dict[str, Any], *, replies_per_minute: int | None = None) -> str | None:
        """Record a reply job (``key``, ``kind``, ``team``, ``channel``, ``ts``, ``thread_ts``,
        ``user_id``, ``text``, ``bot_user_id``, ``bot_id``; ``created_at``: when the mention
        arrived, default now). Returns the kind recorded, or None if the key exists already.

        With ``replies_per_minute``, a ``reply`` whose workspace already has that many replies
        recorded in the minute before it arrived becomes a ``limit`` notice — or, when one was
        recorded in that minute, ``limited``: finished at once, nothing to post. Counted in the
        inserting transaction (on PostgreSQL under the team's lock), so every bot process on
        this store shares the limit."""
        stamp = now()
        row = {"created_at": stamp, **values, "state": JOB_QUEUED, "posted": 0, "attempts": 0}
        row["updated_at"] = stamp
        limit = replies_per_minute if row["kind"] == KIND_REPLY else None
        try:
            with self._write() as conn:
                if limit is not None:
                    _lock_team(conn, row["team"])
                # Insert first: on SQLite that takes the database's write lock, so no other
                # process can record a job between the count below and the commit.
                conn.execute(self.jobs.insert().values(**row))
                if limit is not None:
                    changes = self._over_limit(conn, row, limit)
                    if changes:
                        conn.execute(
                            self.jobs.update().where(self.jobs.c.key == row["key"]).values(**changes)
                        )
                        row.update(changes)
        except IntegrityError:
            return None
        return str(row["kind"])

    def _over_limit(self, conn: sa.Connection, row: dict[str, Any], limit: int) -> dict[str, Any]:
        """The changes that turn a reply over its team's limit into a notice, or into nothing."""
        jobs = self.jobs.c

        def recent(kind: str) -> int:
            query = sa.select(sa.func.count()).where(
                jobs.team == row["team"],
                jobs.kind == kind,
                jobs.created_at > row["created_at"] - REPLY_WINDOW,
                jobs.key != row["key"],
            )
            return int(conn.execute(query).scalar_one())

        if recent(KIND_REPLY) < limit:
            return {}
        if recent(KIND_LIMIT) == 0:
            return {"kind": KIND_LIMIT}
        return {"kind": KIND_LIMITED, "state": JOB_DONE}

    def _claimable(self, stamp: datetime) -> sa.ColumnElement[bool]:
        return sa.or_(
            self.jobs.c.state == JOB_QUEUED,
            sa.and_(self.jobs.c.state == JOB_RUNNING, self.jobs.c.lease_until < stamp),
        )

    def claim_job(self, key: str, owner: str, lease: timedelta) -> JobRecord | None:
        """Take a queued job, or a running one whose owner's lease ran out; None if another
        worker holds it or it is finished."""
        stamp = now()
        with self._write() as conn:
            claimed = conn.execute(
                self.jobs.update()
                .where(self.jobs.c.key == key, self._claimable(stamp))
                .values(
                    state=JOB_RUNNING,
                    owner=owner,
                    lease_until=stamp + lease,
                    attempts=self.jobs.c.attempts + 1,
                    updated_at=stamp,
                )
            ).rowcount
            if claimed != 1:
                return None
            row = conn.execute(sa.select(self.jobs).where(self.jobs.c.key == key)).first()
        return None if row is None else _job(row)

    def claimable_jobs(self, *, queued_before: datetime, limit: int = 100) -> builtins.list[tuple[str, str]]:
        """(key, kind) of jobs nobody holds: queued before ``queued_before``, or running with
        an expired lease; oldest first."""
        stamp = now()
        condition = sa.or_(
            sa.and_(self.jobs.c.state == JOB_QUEUED, self.jobs.c.created_at < queued_before),
            sa.and_(self.jobs.c.state == JOB_RUNNING, self.jobs.c.lease_until < stamp),
        )
        query = (
            sa.select(self.jobs.c.key, self.jobs.c.kind)
            .where(condition)
            .order_by(self.jobs.c.created_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(row.key, row.kind) for row in conn.execute(query)]

    def job_owners(self) -> builtins.list[str]:
        """Owners of running jobs (to find those of a previous, dead process on this host)."""
        query = sa.select(self.jobs.c.owner).where(self.jobs.c.state == JOB_RUNNING).distinct()
        with self.engine.connect() as conn:
            return [str(owner) for owner in conn.execute(query).scalars() if owner]

    def release_jobs(self, owner: str) -> int:
        """Hand an owner's running jobs back to the queue (it stopped, or it is dead)."""
        with self._write() as conn:
            return conn.execute(
                self.jobs.update()
                .where(self.jobs.c.owner == owner, self.jobs.c.state == JOB_RUNNING)
                .values(state=JOB_QUEUED, owner=None, lease_until=None, updated_at=now())
            ).rowcount

    def renew_leases(self, owner: str, lease: timedelta, keys: builtins.list[str] | None = None) -> int:
        """Extend the lease of the owner's running jobs (only ``keys``, when given: the jobs a
        worker is really working on, so one a worker gave up on runs out and is taken over)."""
        if keys is not None and not keys:
            return 0
        stamp = now()
        condition = sa.and_(self.jobs.c.owner == owner, self.jobs.c.state == JOB_RUNNING)
        if keys is not None:
            condition = sa.and_(condition, self.jobs.c.key.in_(keys))
        with self._write() as conn:
            return conn.execute(
                self.jobs.update().where(condition).values(lease_until=stamp + lease)
            ).rowcount

    def update_job(self, key: str, owner: str, **values: Any) -> bool:
        """Change a job this owner holds (``reply`` as a dict, ``posted``, ``state``, ``error``);
        False if the owner lost it (its lease ran out and another worker took it)."""
        if "reply" in values and values["reply"] is not None:
            values["reply"] = json.dumps(values["reply"])
        if values.get("state") in (JOB_DONE, JOB_FAILED):
            values.update(owner=None, lease_until=None)
        with self._write() as conn:
            return bool(
                conn.execute(
                    self.jobs.update()
                    .where(self.jobs.c.key == key, self.jobs.c.owner == owner)
                    .values(**values, updated_at=now())
                ).rowcount
            )

    def get_job(self, key: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.jobs).where(self.jobs.c.key == key)).first()
        return None if row is None else _job(row)

    def unfinished_jobs(self) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(self.jobs)
            .where(self.jobs.c.state.in_((JOB_QUEUED, JOB_RUNNING)))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


def _job(row: sa.Row[Any]) -> JobRecord:
    m = row._mapping
    reply = json.loads(m["reply"]) if m["reply"] else None
    return JobRecord(
        key=m["key"],
        kind=m["kind"],
        team=m["team"],
        channel=m["channel"],
        ts=m["ts"],
        thread_ts=m["thread_ts"],
        user=m["user_id"],
        text=m["text"],
        bot_user_id=m["bot_user_id"],
        bot_id=m["bot_id"],
        state=m["state"],
        reply=reply if isinstance(reply, dict) else None,
        posted=int(m["posted"] or 0),
        attempts=int(m["attempts"] or 0),
        error=m["error"],
        created_at=_aware(m["created_at"]),
    )


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
