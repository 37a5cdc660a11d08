"""@mention (or DM) → thread → engine → reply in the thread, exactly once.

:meth:`MentionReplier.accept` runs inside the request, before the ack: it filters the event and
records a reply job keyed by the message (team, channel, ts: a retry, a concurrent duplicate or
the app_mention/message double delivery find it taken; :mod:`doppelkit_slack.bolt.jobs`).
:meth:`MentionReplier.process` runs on a worker thread after the ack: it fetches the thread,
asks the engine (which builds the prompt with the persona's formatter, the same code as
training), saves the composed reply, and posts its parts as the persona, recording each.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from doppelkit.interfaces import Engine
from doppelkit.models import DatasetReport, Message, Persona, Thread, is_safe_id
from doppelkit.mrkdwn import mentioned_channel_ids
from doppelkit.threads import referenced_user_ids
from doppelkit_slack.bolt.avatar import Avatars
from doppelkit_slack.bolt.jobs import BUSY, LIMIT, ClaimedJob, JobAbandoned, JobSettings, ReplyJobs
from doppelkit_slack.bolt.personas import ChannelDirectory, MemberDirectory, PersonaChooser
from doppelkit_slack.bolt.posting import (
    UNREACHABLE,
    Identity,
    PostFailed,
    bot_username,
    outgoing_messages,
    post_message,
    posted_part,
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
SLACKBOT = "USLACKBOT"  # Slackbot (reminders, its own replies): never a person to answer
BUSY_NOTICE = "Sorry, I'm answering a lot of messages right now; please ask me again in a few minutes."
STALE_NOTICE = "Sorry, I took too long to get to your message; please ask me again."


def limit_notice(per_minute: int | None) -> str:
    return (
        f"This workspace asked me for more than {per_minute} replies in the last minute (the limit); "
        "I'll answer mentions again in a moment."
    )


def notice(text: str) -> dict[str, Any]:
    """A reply job's answer that is a short system notice, not a persona's words."""
    return {"messages": [text], "persona": None, "identity": {"username": SYSTEM_USERNAME}}


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
        clients: Callable[[str], WebClient],
        chooser: PersonaChooser,
        directory: MemberDirectory,
        avatars: Avatars,
        settings: ReplySettings,
        jobs: JobSettings | None = None,
        channels: ChannelDirectory | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.clients = clients  # the team's client (its own token)
        self.chooser = chooser
        self.directory = directory
        self.channels = channels
        self.avatars = avatars
        self.settings = settings
        self.jobs = ReplyJobs(store, self.process, jobs or JobSettings())  # started by the runtime

    # --- before the ack -----------------------------------------------------------------------

    def accept(self, body: dict[str, Any], *, bot_user_id: str | None, bot_id: str | None) -> str:
        """Decide and record; returns what happened (``queued``, ``busy``, ``limit``, ``limited``,
        ``duplicate``, ``unrecorded``, ``ignored: …``). Never calls Slack; waits on the store at most
        ``ack_wait_s`` (:meth:`ReplyJobs.submit`)."""
        event = body.get("event") or {}
        job = self._job(body, event, bot_user_id, bot_id)
        if isinstance(job, str):
            return "ignored: " + job
        return self.jobs.submit(
            {
                "key": f"{job.team}:{job.channel}:{job.ts}",
                "team": job.team,
                "channel": job.channel,
                "ts": job.ts,
                "thread_ts": job.thread_ts,
                "user_id": job.user,
                "text": job.text,
                "bot_user_id": job.bot_user_id,
                "bot_id": job.bot_id,
            }
        )

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every job recorded or queued here is finished (tests, benchmarks)."""
        return self.jobs.wait_idle(timeout)

    def _job(
        self, body: dict[str, Any], event: dict[str, Any], bot_user_id: str | None, bot_id: str | None
    ) -> MentionJob | str:
        kind = event.get("type")
        if event.get("bot_id") or event.get("subtype") == "bot_message":
            return "from a bot"
        if event.get("user") == SLACKBOT:
            return "from Slackbot"
        if event.get("subtype") not in REPLYABLE_SUBTYPES:
            return f"subtype {event.get('subtype')}"
        user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
        team = body.get("team_id") or event.get("team")
        if not all(isinstance(v, str) and v for v in (user, channel, ts, team)):
            return "incomplete event"
        if not (all(is_safe_id(v) for v in (user, channel, team)) and _TS.fullmatch(str(ts))):
            return "not Slack IDs"  # they key the job, the store and posts: validated here, once
        thread_ts_raw = event.get("thread_ts")
        if thread_ts_raw is not None and not (
            isinstance(thread_ts_raw, str) and _TS.fullmatch(thread_ts_raw)
        ):
            return "not a Slack thread ts"
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

    def process(self, claimed: ClaimedJob) -> None:
        """Run a claimed job to the end: compose the reply once (saved before the first post),
        then post the parts not yet in Slack."""
        record = claimed.record
        job = MentionJob(
            record.team, record.channel, record.ts, record.thread_ts, record.user, record.text,
            record.bot_user_id, record.bot_id,
        )  # fmt: skip
        reply = claimed.reply
        if reply is None:
            if record.kind == BUSY:
                reply = notice(BUSY_NOTICE)
            elif record.kind == LIMIT:
                reply = notice(limit_notice(self.jobs.settings.replies_per_minute))
            elif claimed.age_s > self.jobs.settings.max_age_s:
                log.warning("job %s waited %.0f s (limit %.0f s): apologising", record.key, claimed.age_s,
                            self.jobs.settings.max_age_s)  # fmt: skip
                self.jobs.counts["expired"] += 1
                reply = notice(STALE_NOTICE)
            else:
                reply = self.compose(job)
            claimed.save_reply(reply)
        self._post(claimed, job, reply)

    def compose(self, job: MentionJob) -> dict[str, Any]:
        """The whole answer to a mention (the persona's reply, or a notice saying why not)."""
        try:
            return self._compose(job)
        except JobAbandoned:
            raise
        except Exception:  # the user gets an apology, not silence
            log.exception("failed to answer %s/%s", job.channel, job.ts)
            return notice("Sorry, something went wrong while I was writing a reply.")

    def _compose(self, job: MentionJob) -> dict[str, Any]:
        answering = self.chooser.answering(job.team)
        if answering is None:
            return notice(
                "No persona is set up in this workspace yet. Train one with `/doppel train @someone`, "
                "then mention me again. `/doppel help` lists every command."
            )
        persona = answering.persona
        if not answering.trained:
            state = answering.record.state if answering.record else None
            if state in (SCRAPING, TRAINING):
                return notice(
                    f"{persona.label} is still being trained ({state}); mention me again when it is done."
                )
            return notice(
                f"{persona.label} has no trained model yet. Start one with "
                f"`/doppel train {persona.id}`, or pick another persona with `/doppel switch`."
            )
        thread = self.fetch_thread(job, persona)
        try:
            parts = self.engine.reply(persona, thread, bot_user_id=job.bot_user_id)
        except Exception as exc:
            if self.jobs.closing:  # the engine was closed under this reply: the next bot answers
                raise JobAbandoned(f"the engine stopped with the bot ({type(exc).__name__}: {exc})") from exc
            log.exception("the engine failed for %s", persona.id)
            return notice(f"Sorry, {persona.label} could not come up with a reply this time.")
        messages = outgoing_messages([p for p in parts if p and p.strip()], self.settings.max_message_chars)
        if not messages:
            log.warning("the engine returned an empty reply for %s/%s", job.channel, job.ts)
        identity = self.avatars.identity(job.team, persona)
        return {
            "messages": messages,
            "persona": persona.id,
            "identity": {"username": identity.username, "icon_url": identity.icon_url,
                         "icon_emoji": identity.icon_emoji},
        }  # fmt: skip

    def _post(self, claimed: ClaimedJob, job: MentionJob, reply: dict[str, Any]) -> None:
        messages = [str(m) for m in reply.get("messages") or []]
        persona = reply.get("persona")
        identity = Identity(**(reply.get("identity") or {"username": SYSTEM_USERNAME}))
        start = claimed.posted
        if claimed.resumed and start < len(messages):
            start = max(start, self._posted_before(job, claimed.record.key))
        client = self.clients(job.team)
        for part in range(start, len(messages)):
            metadata = reply_metadata(persona, claimed.record.key, part)
            try:
                post_message(client, job.channel, job.thread_ts, messages[part], identity, metadata)
            except PostFailed as failed:
                self._gave_up(claimed, job, failed, part, len(messages), persona)
                return
            claimed.save_posted(part + 1)
        self.jobs.counts["notices" if persona is None else "replies"] += 1
        claimed.finish()

    def _posted_before(self, job: MentionJob, key: str) -> int:
        """How many parts of job ``key`` are in the thread already (posted by a worker that died
        before it could record them)."""
        found = [posted_part(m, key) for m in self._replies(job) if _is_ours(m, job)]
        parts = [p for p in found if p is not None]
        return max(parts) + 1 if parts else 0

    def _gave_up(
        self, claimed: ClaimedJob, job: MentionJob, failed: PostFailed, part: int, total: int, persona: Any
    ) -> None:
        key = claimed.record.key
        log.error(
            "giving up on the reply to %s in %s (thread %s): Slack error %s; %d of %d part(s) posted",
            job.ts, job.channel, job.thread_ts, failed.code, part, total,
        )  # fmt: skip
        self.jobs.record_failure(key, failed.code, f"{part} of {total} part(s) posted")
        claimed.finish(f"slack: {failed.code}; {part} of {total} posted")
        if persona is not None and failed.code not in UNREACHABLE:
            try:  # a permanent error with this reply (too long, refused): tell the person
                post_message(
                    self.clients(job.team), job.channel, job.thread_ts,
                    f"Sorry, I could not post my reply (Slack said `{failed.code}`).",
                    Identity(SYSTEM_USERNAME), reply_metadata(None, key, total),
                )  # fmt: skip
            except PostFailed as again:
                log.error("the notice about job %s failed too: %s", key, again.code)

    def shutdown(self, wait: bool = True) -> None:
        self.jobs.close(wait=wait)

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
                response = self.clients(job.team).conversations_replies(
                    channel=job.channel, ts=job.thread_ts, limit=200, cursor=cursor, include_all_metadata=True
                )
                collected.extend(m for m in response.get("messages") or [] if isinstance(m, dict))
                cursor = (response.get("response_metadata") or {}).get("next_cursor")
                if not cursor or not response.get("has_more", True):
                    break
        except (SlackApiError, SlackRequestError, OSError) as exc:
            log.warning("conversations.replies failed (%s); answering the mention alone", type(exc).__name__)
        return collected


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
