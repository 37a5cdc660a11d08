"""Consent of the person to be cloned (``frontend.consent``).

``ask`` (the default): ``/doppel train @someone`` sends that person a direct message with
*Approve* / *Decline* buttons (Block Kit); training starts only after they approve. A person
training themselves has consented by asking. The decision is stored (``doppel_consents``: who,
when, asked by whom) — one row per (team, person), decided once per request: the conditional
update from ``pending`` lets exactly one button press win. A decline, or the person's own
``/doppel forget me`` later, deletes everything about them (the forget hooks) and records it.

``none``: no one is asked (one-person set-ups); the bot says so in its reply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from doppelkit.models import SAFE_ID, User
from doppelkit_slack.bolt.posting import without_pings
from doppelkit_slack.store import PersonaStore

log = logging.getLogger("doppelkit.bolt")
PENDING, APPROVED, DECLINED, REVOKED = "pending", "approved", "declined", "revoked"
APPROVE, DECLINE = "doppel_consent_approve", "doppel_consent_decline"
ACTIONS = (APPROVE, DECLINE)


@dataclass(frozen=True)
class ConsentRecord:
    team: str
    user_id: str
    name: str
    state: str
    requested_by: str
    channel: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None


class ConsentStore:
    """``doppel_consents`` in the persona store's database."""

    def __init__(self, store: PersonaStore) -> None:
        self.store = store
        self.metadata = sa.MetaData(schema=store.metadata.schema)
        ts = sa.DateTime(timezone=True)
        self.table = sa.Table(
            "doppel_consents",
            self.metadata,
            sa.Column("team", sa.String(64), primary_key=True),
            sa.Column("user_id", sa.String(64), primary_key=True),
            sa.Column("name", sa.String(255), nullable=False, default=""),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("requested_by", sa.String(64), nullable=False),
            sa.Column("channel", sa.String(64), nullable=False),
            sa.Column("requested_at", ts, nullable=False),
            sa.Column("decided_by", sa.String(64)),
            sa.Column("decided_at", ts),
        )

    def create_schema(self) -> None:
        self.store.create_tables(self.metadata)

    def _where(self, team: str, user_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(self.table.c.team == team, self.table.c.user_id == user_id)

    def get(self, team: str, user_id: str) -> ConsentRecord | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(self.table).where(self._where(team, user_id))).first()
        if row is None:
            return None
        m = row._mapping
        return ConsentRecord(
            m["team"], m["user_id"], m["name"], m["state"], m["requested_by"], m["channel"],
            _aware(m["requested_at"]) or _now(), m["decided_by"], _aware(m["decided_at"]),
        )  # fmt: skip

    def request(self, team: str, user: User, requested_by: str, channel: str, state: str = PENDING) -> bool:
        """Record a new request (or a consent given by asking for oneself); False when one is
        already pending."""
        values = {
            "name": user.label, "state": state, "requested_by": requested_by, "channel": channel,
            "requested_at": _now(), "decided_by": requested_by if state == APPROVED else None,
            "decided_at": _now() if state == APPROVED else None,
        }  # fmt: skip
        with self.store._write() as conn:
            changed = conn.execute(
                self.table.update()
                .where(self._where(team, user.id), self.table.c.state != PENDING)
                .values(**values)
            ).rowcount
            if changed:
                return True
            try:
                with conn.begin_nested():
                    conn.execute(self.table.insert().values(team=team, user_id=user.id, **values))
            except sa.exc.IntegrityError:
                return False  # a pending request exists
        return True

    def decide(self, team: str, user_id: str, state: str, by: str) -> bool:
        """``pending`` → ``state``, once: True only for the one caller whose update won."""
        with self.store._write() as conn:
            return bool(
                conn.execute(
                    self.table.update()
                    .where(self._where(team, user_id), self.table.c.state == PENDING)
                    .values(state=state, decided_by=by, decided_at=_now())
                ).rowcount
            )

    def revoke(self, team: str, user_id: str, by: str) -> None:
        with self.store._write() as conn:
            conn.execute(
                self.table.update()
                .where(self._where(team, user_id))
                .values(state=REVOKED, decided_by=by, decided_at=_now())
            )

    def delete_team(self, team: str) -> None:
        with self.store._write() as conn:
            conn.execute(self.table.delete().where(self.table.c.team == team))


def request_blocks(requester: str, person: User, team: str) -> list[dict[str, Any]]:
    """The DM's blocks; ``requester`` is the asker's name (never a mention: the bot pings nobody)."""
    value = json.dumps({"team": team, "user": person.id})
    text = without_pings(
        f"{requester} asked me to learn how you write, from your messages in this workspace's "
        "public channels, and to answer as a bot that sounds like you (its replies are signed "
        f"“{person.label}-bot”). Nothing is trained unless you approve; you can have everything "
        "deleted at any time with `/doppel forget me`."
    )
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "block_id": "doppel_consent",
            "elements": [
                {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": DECLINE, "style": "danger", "value": value,
                 "text": {"type": "plain_text", "text": "Decline"}},
            ],
        },
    ]  # fmt: skip


def ask(client: WebClient, requester: str, person: User, team: str) -> bool:
    """DM the person the request (``requester``: the asker's name); False when it could not be
    delivered."""
    question = f"{requester} asks whether I may learn to write like you. Approve or decline."
    try:
        client.chat_postMessage(
            channel=person.id,
            text=without_pings(question),
            blocks=request_blocks(requester, person, team),
        )
    except (SlackApiError, SlackRequestError, OSError) as exc:
        log.warning("could not ask %s for consent: %s", person.id, type(exc).__name__)
        return False
    return True


def pressed(body: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """(action, team, person, presser) of a consent button press; None when malformed."""
    actions = body.get("actions") or []
    action = actions[0] if actions and isinstance(actions[0], dict) else {}
    try:
        value = json.loads(str(action.get("value") or ""))
    except ValueError:
        return None
    presser = (body.get("user") or {}).get("id")
    team, person = (value or {}).get("team"), (value or {}).get("user")
    if action.get("action_id") not in ACTIONS or not all(
        isinstance(v, str) and SAFE_ID.fullmatch(v) for v in (team, person, presser)
    ):
        return None
    return str(action["action_id"]), str(team), str(person), str(presser)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


Respond = Callable[..., Any]  # Bolt's respond(text=..., replace_original=..., response_type=...)


class ConsentGate:
    """``/doppel train``'s consent step and the buttons' answers."""

    def __init__(
        self,
        *,
        mode: str,
        consents: ConsentStore,
        clients: Callable[[str], WebClient],
        start: Callable[[str, str, User, str, str], None],
        forget: Callable[[str, str], None],
        notify: Callable[[str, str, str], None],
        label: Callable[[str, str], str],
    ) -> None:
        self.mode = mode
        self.consents = consents
        self.clients = clients
        self.start = start  # (team, channel, person, requested_by, response_url): raises StoreError & co.
        self.forget = forget  # (team, person): everything about them, through the forget hooks
        self.notify = notify  # (team, channel, text)
        self.label = label  # (team, user ID) → the name people know them by: posts never mention

    def train(self, team: str, channel: str, requester: str, person: User, response_url: str = "") -> str:
        """Start training ``person``, or ask them first; the reply to the command."""
        if self.mode == "none":
            self.start(team, channel, person, requester, response_url)
            return (
                f"Started training {person.label}. I'll post progress in this channel. "
                f"Consent was not asked (frontend.consent=none)."
            )
        if requester == person.id:
            self.consents.request(team, person, requester, channel, state=APPROVED)
            self.start(team, channel, person, requester, response_url)
            return f"Started training {person.label} (you asked for yourself). I'll post progress here."
        record = self.consents.get(team, person.id)
        if record is not None and record.state == APPROVED:
            self.start(team, channel, person, requester, response_url)
            return f"Started training {person.label} (they approved on {record.decided_at:%Y-%m-%d})."
        if not self.consents.request(team, person, requester, channel):
            return f"I already asked {person.label} for consent and am waiting for their answer."
        if not ask(self.clients(team), self.label(team, requester), person, team):
            self.consents.decide(team, person.id, REVOKED, requester)
            return f"I could not send {person.label} a message to ask for consent; nothing was started."
        return (
            f"I asked {person.label} for consent in a direct message. Training starts when they "
            "approve; I'll post progress in this channel."
        )

    def on_press(self, body: dict[str, Any], served: str | None, respond: Respond) -> None:
        """An Approve/Decline press (already acked); answers through ``respond``."""
        parsed = pressed(body)
        if parsed is None or served is None or parsed[1] != served:
            respond(text="This request is not valid here.", response_type="ephemeral", replace_original=False)
            return
        action, team, person, presser = parsed
        if presser != person:
            respond(
                text=without_pings(f"Only {self.label(team, person)} can answer this request."),
                response_type="ephemeral",
                replace_original=False,
            )
            return
        record = self.consents.get(team, person)
        state = APPROVED if action == APPROVE else DECLINED
        if record is None or not self.consents.decide(team, person, state, presser):
            answered = record.state if record else "no longer open"
            respond(
                text=f"You already answered this request ({answered}).",
                response_type="ephemeral",
                replace_original=False,
            )
            return
        user = User(id=person, display_name=record.name)
        if state == DECLINED:
            self.forget(team, person)
            respond(
                text="You declined: nothing will be trained, and anything I kept about you was deleted.",
                replace_original=True,
            )
            self.notify(team, record.channel, f"{record.name} declined to be trained.")
            return
        try:
            # the command's response_url may be gone by now: progress goes to its channel
            self.start(team, record.channel, user, record.requested_by, "")
        except Exception as exc:  # the limit was reached meanwhile, a run is going, …
            respond(text=f"You approved, but training could not start: {exc}", replace_original=True)
            return
        respond(
            text="You approved: training has started. `/doppel forget me` deletes everything at any time.",
            replace_original=True,
        )
