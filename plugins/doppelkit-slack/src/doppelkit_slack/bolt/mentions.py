"""@mention (or DM) → thread → engine → reply in the thread, exactly once.

:meth:`MentionReplier.accept` runs inside the request, before the ack: it filters the event,
claims it in the store (``event:<event_id>`` and ``message:<team>:<channel>:<ts>``: a retry, a
concurrent duplicate or the app_mention/message double delivery all lose the claim) and queues
the work. :meth:`MentionReplier.reply` runs on a worker thread after the ack: it fetches the
thread, asks the engine (which builds the prompt with the persona's formatter, the same code as
training) and posts the reply as the persona.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from doppelkit.interfaces import Engine
from doppelkit.models import DatasetReport, Message, Persona, Thread
from doppelkit.mrkdwn import mentioned_channel_ids
from doppelkit.threads import referenced_user_ids
from doppelkit_slack.bolt.avatar import Avatars
from doppelkit_slack.bolt.personas import ChannelDirectory, MemberDirectory, PersonaChooser
from doppelkit_slack.bolt.posting import (
    Identity,
    bot_username,
    outgoing_messages,
    post_messages,
    reply_metadata,
    replying_persona,
)
from doppelkit_slack.messages import ChannelInfo, assemble_threads
from doppelkit_slack.store import SCRAPING, TRAINING, PersonaStore

log = logging.getLogger("doppelkit.bolt")
SYSTEM_USERNAME = "doppelkit"
# Message subtypes a person typed; edits, deletions, joins and the like never trigger a reply.
REPLYABLE_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})
MAX_REPLY_PAGES = 20


@dataclass(frozen=True)
class MentionJob:
    team: str
    channel: str
    ts: str
    thread_ts: str
    user: str
    text: str
    bot_user_id: str | None
    bot_id: str | None


@dataclass
class ReplySettings:
    max_message_chars: int = 4000
    max_thread_messages: int = 200
    answer_dms: bool = True


class MentionReplier:
    def __init__(
        self,
        *,
        store: PersonaStore,
        engine: Engine,
        client: WebClient,
        chooser: PersonaChooser,
        directory: MemberDirectory,
        avatars: Avatars,
        settings: ReplySettings,
        workers: int,
        channels: ChannelDirectory | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.client = client
        self.chooser = chooser
        self.directory = directory
        self.channels = channels
        self.avatars = avatars
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="doppel-reply")
        self._pending: set[Future[None]] = set()
        self._pending_lock = threading.Lock()

    # --- before the ack -----------------------------------------------------------------------

    def accept(self, body: dict[str, Any], *, bot_user_id: str | None, bot_id: str | None) -> str:
        """Decide and claim; returns what happened (``queued``, ``duplicate``, ``ignored: …``)."""
        event = body.get("event") or {}
        job = self._job(body, event, bot_user_id, bot_id)
        if isinstance(job, str):
            return "ignored: " + job
        try:
            event_id = body.get("event_id")
            if event_id and not self.store.claim(f"event:{event_id}"):
                return "duplicate"
            if not self.store.claim(f"message:{job.team}:{job.channel}:{job.ts}"):
                return "duplicate"
        except Exception:  # the store is down: better no reply than a duplicate later
            log.exception("could not record event %s; not replying", body.get("event_id"))
            return "ignored: store unavailable"
        future = self.executor.submit(self.reply, job)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return "queued"

    def _done(self, future: Future[None]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    @property
    def pending(self) -> list[Future[None]]:
        """Replies queued or being generated (tests and benchmarks wait on these)."""
        with self._pending_lock:
            return list(self._pending)

    def _job(
        self, body: dict[str, Any], event: dict[str, Any], bot_user_id: str | None, bot_id: str | None
    ) -> MentionJob | str:
        kind = event.get("type")
        if event.get("bot_id") or event.get("subtype") == "bot_message":
            return "from a bot"
        if event.get("subtype") not in REPLYABLE_SUBTYPES:
            return f"subtype {event.get('subtype')}"
        user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
        team = body.get("team_id") or event.get("team")
        if not all(isinstance(v, str) and v for v in (user, channel, ts, team)):
            return "incomplete event"
        if bot_user_id and user == bot_user_id:
            return "our own message"
        text = str(event.get("text") or "")
        if kind == "message":
            is_dm = event.get("channel_type") == "im"
            mentions_bot = bool(bot_user_id) and f"<@{bot_user_id}" in text
            if not ((is_dm and self.settings.answer_dms) or mentions_bot):
                return "a message not addressed to the bot"
        elif kind != "app_mention":
            return f"event {kind}"
        thread_ts = str(event.get("thread_ts") or ts)
        return MentionJob(str(team), str(channel), str(ts), thread_ts, str(user), text, bot_user_id, bot_id)

    # --- after the ack ------------------------------------------------------------------------

    def reply(self, job: MentionJob) -> None:
        try:
            self._reply(job)
        except Exception:  # a worker must never die; the user gets an apology, not silence
            log.exception("failed to answer %s/%s", job.channel, job.ts)
            self._post_notice(job, "Sorry, something went wrong while I was writing a reply.")

    def _reply(self, job: MentionJob) -> None:
        answering = self.chooser.answering(job.team)
        if answering is None:
            self._post_notice(
                job,
                "No persona is set up in this workspace yet. Train one with `/doppel train @someone`, "
                "then mention me again. `/doppel help` lists every command.",
            )
            return
        persona = answering.persona
        if not answering.trained:
            state = answering.record.state if answering.record else None
            if state in (SCRAPING, TRAINING):
                note = f"{persona.label} is still being trained ({state}); mention me again when it is done."
            else:
                note = (
                    f"{persona.label} has no trained model yet. Start one with "
                    f"`/doppel train <@{persona.id}>`, or pick another persona with `/doppel switch`."
                )
            self._post_notice(job, note)
            return
        thread = self.fetch_thread(job, persona)
        try:
            parts = self.engine.reply(persona, thread, bot_user_id=job.bot_user_id)
        except Exception:
            log.exception("the engine failed for %s", persona.id)
            self._post_notice(job, f"Sorry, {persona.label} could not come up with a reply this time.")
            return
        messages = outgoing_messages([p for p in parts if p and p.strip()], self.settings.max_message_chars)
        if not messages:
            log.warning("the engine returned an empty reply for %s/%s", job.channel, job.ts)
            return
        identity = self.avatars.identity(job.team, persona)
        post_messages(
            self.client, job.channel, job.thread_ts, messages, identity, metadata=reply_metadata(persona.id)
        )

    def _post_notice(self, job: MentionJob, text: str) -> None:
        post_messages(self.client, job.channel, job.thread_ts, [text], Identity(SYSTEM_USERNAME))

    # --- the thread -----------------------------------------------------------------------------

    def fetch_thread(self, job: MentionJob, persona: Persona) -> Thread:
        """The thread up to the mention, newest ``max_thread_messages`` messages.

        Slack's messages go through the same parser as in training
        (:func:`doppelkit_slack.messages.assemble_threads`): system events and hidden messages
        are dropped, bots are context filed under their bot ID and named, empty texts are
        rebuilt from rich-text blocks (and a bot's attachments), ``reply_broadcast`` is
        ``thread_broadcast``. So the thread reads exactly as the same thread did in the dataset.

        The bot's own earlier posts are sorted by their metadata first (:func:`replying_persona`):
        this persona's replies become its own turns, another persona's (before a ``/doppel
        switch``) that person's turns, and notices ("no persona yet", apologies) are dropped —
        they are not anyone's words. If ``conversations.replies`` fails, the mention alone is
        the context.
        """
        members = self.directory.members(job.team)
        raw_messages: list[dict[str, Any]] = []
        for raw in self._replies(job):
            ts = raw.get("ts")
            if not isinstance(ts, str) or not _TS.fullmatch(ts):
                continue
            if _is_ours(raw, job):
                own = _own_post(raw, job, persona)
                if own is None:
                    continue
                raw = own
            raw_messages.append(raw)
        report = DatasetReport()
        threads = assemble_threads(
            raw_messages,
            team=job.team,
            channel=ChannelInfo(job.channel),
            report=report,
            bot_users={user_id for user_id, member in members.items() if member.user.is_bot},
            bot_names=self.directory.bot_names(job.team),
            known_users=members.keys(),
        )
        if report.drops:
            log.debug("left out of thread %s: %s", job.thread_ts, dict(report.drops))
        mention_ts = float(job.ts)
        messages = [m for t in threads for m in t.messages if m.ts_key <= mention_ts]
        if not any(m.ts == job.ts for m in messages):
            messages.append(Message(ts=job.ts, user=job.user, text=job.text, thread_ts=job.thread_ts))
        messages.sort(key=lambda m: m.ts_key)
        unique = list({m.ts: m for m in messages}.values())[-self.settings.max_thread_messages :]
        thread = Thread(team=job.team, channel=job.channel, ts=job.thread_ts, messages=unique)
        # Labels as ingest gives them: the bots' names the parser found, then the people
        # (authors and mentions) from the workspace directory.
        referenced = referenced_user_ids(thread)
        labels = {uid: name for t in threads for uid, name in t.user_labels.items() if uid in referenced}
        for user_id in referenced:
            if user_id in members and user_id not in labels:
                labels[user_id] = members[user_id].user.label
        # Channel names as training had them from channels.json: this channel's (the system
        # prompt names it) and those of <#C…> mentions (public channels only).
        channel_ids = {c for m in thread.messages if "<#" in m.text for c in mentioned_channel_ids(m.text)}
        names = self.channels.names(job.team, sorted(channel_ids | {job.channel})) if self.channels else {}
        channel_name = names.pop(job.channel, "")
        return thread.model_copy(
            update={"user_labels": labels, "channel_labels": names, "channel_name": channel_name}
        )

    def _replies(self, job: MentionJob) -> list[dict[str, Any]]:
        collected: list[dict[str, Any]] = []
        cursor = None
        try:
            for _ in range(MAX_REPLY_PAGES):
                response = self.client.conversations_replies(
                    channel=job.channel, ts=job.thread_ts, limit=200, cursor=cursor, include_all_metadata=True
                )
                collected.extend(m for m in response.get("messages") or [] if isinstance(m, dict))
                cursor = (response.get("response_metadata") or {}).get("next_cursor")
                if not cursor or not response.get("has_more", True):
                    break
        except (SlackApiError, SlackRequestError, OSError) as exc:
            log.warning("conversations.replies failed (%s); answering the mention alone", type(exc).__name__)
        return collected

    def shutdown(self, wait: bool = True) -> None:
        self.executor.shutdown(wait=wait, cancel_futures=not wait)


_TS = re.compile(r"^\d{1,12}(\.\d{1,9})?$")  # a live message's ts; anything else is ignored


def _is_ours(raw: dict[str, Any], job: MentionJob) -> bool:
    """Posted by this bot (its bot user, or its bot ID)."""
    return bool(
        (job.bot_user_id and raw.get("user") == job.bot_user_id)
        or (job.bot_id and raw.get("bot_id") == job.bot_id)
    )


def _own_post(raw: dict[str, Any], job: MentionJob, persona: Persona) -> dict[str, Any] | None:
    """One of the bot's posts as the raw message of the persona it spoke as, or None for a
    notice (nobody's words)."""
    speaker = replying_persona(raw)
    if speaker is None and raw.get("username") == bot_username(persona):
        speaker = persona.id  # a reply posted before replies carried metadata
    if speaker is None:
        return None
    return {
        "type": "message",
        "ts": raw["ts"],
        "user": speaker,
        "text": str(raw.get("text") or ""),
        "thread_ts": job.thread_ts,
    }
