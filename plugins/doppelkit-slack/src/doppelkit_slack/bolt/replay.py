"""Slash commands and interactions run once, however often a signed request is replayed.

Slack retries events (handled by the reply jobs), never commands — but anyone who captured a
signed ``/doppel train`` can send it again within the 300 s the signature stays fresh, and it
would run again. A global middleware claims each command and interaction in the store before
any listener runs: by ``trigger_id`` (Slack gives every command and interaction a fresh one),
else by a digest of the signed request (timestamp, signature, body). A replay is acknowledged
with nothing. The claim waits at most :data:`CLAIM_WAIT_S` for the store; past that the person
is told to try again instead of the ack stalling.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from doppelkit_slack.store import PersonaStore

log = logging.getLogger("doppelkit.bolt")
CLAIM_WAIT_S = 1.0
STORE_BUSY = "The bot's database is busy right now; please try again in a minute."
INTERACTIONS = frozenset(
    {"block_actions", "block_suggestion", "view_submission", "view_closed", "shortcut", "message_action",
     "interactive_message", "dialog_submission", "dialog_cancellation", "workflow_step_edit"}
)  # fmt: skip


def replay_key(body: dict[str, Any], request: BoltRequest) -> str | None:
    """The dedup key of a command or interaction; None for anything else (events)."""
    is_command = isinstance(body.get("command"), str)
    if not is_command and body.get("type") not in INTERACTIONS:
        return None
    team = body.get("team_id")
    if team is None and isinstance(body.get("team"), dict):
        team = body["team"].get("id")
    trigger = body.get("trigger_id")
    if isinstance(trigger, str) and trigger:
        return f"trigger:{team}:{trigger}"[:255]
    headers = ("x-slack-request-timestamp", "x-slack-signature")
    signed = "".join(str((request.headers.get(name) or [""])[0]) for name in headers)
    raw = request.raw_body if isinstance(request.raw_body, str) else ""
    return "request:" + hashlib.sha256((signed + "\n" + raw).encode()).hexdigest()


def bounded_claim(store: PersonaStore, key: str, wait_s: float = CLAIM_WAIT_S) -> bool | None:
    """``store.claim(key)``, or None if the store did not answer within ``wait_s`` (the claim
    still completes in the background)."""
    outcome: list[bool] = []
    done = threading.Event()

    def claim() -> None:
        try:
            outcome.append(store.claim(key))
        except Exception as exc:
            log.error("could not record %s: %s", key, exc)
        finally:
            done.set()

    threading.Thread(target=claim, name="doppel-claim", daemon=True).start()
    if not done.wait(wait_s) or not outcome:
        return None
    return outcome[0]


def register_replay_guard(app: App, store: PersonaStore) -> None:
    @app.middleware
    def once(
        body: dict[str, Any], request: BoltRequest, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        key = replay_key(body, request)
        if key is None:
            return next()
        first = bounded_claim(store, key)
        if first is None:
            return BoltResponse(status=200, body=STORE_BUSY)
        if not first:
            log.warning("ignored a replayed %s (%s)", body.get("command") or body.get("type"), key)
            return BoltResponse(status=200, body="")
        return next()
