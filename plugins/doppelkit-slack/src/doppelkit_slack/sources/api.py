"""The ``slack`` source: threads scraped live through the Slack Web API.

``SLACK_BOT_TOKEN=xoxb-… doppelkit ingest source=slack persona.user=maya``

For internal (single-workspace) apps: Slack's terms forbid training on Web API data for apps
distributed to other workspaces, which should use ``slack_export`` instead. Reads public,
non-archived channels (private ones only with ``source.include_private=true``; DMs never),
pages every history and thread with cursors, honours ``Retry-After``, adapts to capped pages,
bounds concurrency and is resumable: see :mod:`doppelkit_slack.sources.checkpoint` for where
progress lives and when raw messages are deleted. Messages become threads with the same code as
the export source and the bot (:mod:`doppelkit_slack.messages`), so all read a workspace alike.

Scrubbing: every message is passed through the ``scrub_message`` hooks (:class:`MessageScrubber`)
*before* it is journaled, so secrets and emails never reach ``home/state/scrape`` in the clear.
What was removed is kept in the journal per message and added to the dataset report as each
thread is yielded (``ingest`` scrubs again, but finds nothing left in redacted text).
"""

from __future__ import annotations

import os
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from doppelkit.errors import ConfigError, UserError
from doppelkit.interfaces import RunContext
from doppelkit.models import ID, DatasetReport, Thread, User, Workspace, validate_safe_id
from doppelkit.plugins import scrub
from doppelkit.settings import ScrubConfig
from doppelkit.threads import label_threads
from doppelkit_slack.files import scrape_dir
from doppelkit_slack.messages import assemble_threads, bot_names_from_users, message_text, user_from_record
from doppelkit_slack.sources.checkpoint import MessageRedactor, ScrapeCheckpoint
from doppelkit_slack.sources.scraper import ChannelRef, ChannelScraper, PageSize
from doppelkit_slack.webclient import DEFAULT_API_URL, SlackAuthError, SlackCaller, SlackCallError

TOKEN_ENV = "SLACK_BOT_TOKEN"
LIST_PAGE_SIZE = 200  # users.list / conversations.list: not capped like message pages

# Keys whose string values (at any depth of a raw message) are redacted before journaling:
# ``text`` (the message, rich-text ``blocks`` leaves, ``attachments``), the attachment fields a
# bot's text is rebuilt from, a file comment's words, and file titles and snippet previews
# (never used, never kept raw).
TEXT_KEYS = frozenset({"text", "fallback", "pretext", "title", "preview", "comment"})


class MessageScrubber:
    """Redacts one raw Web API message with the ``scrub_message`` chain, before it is journaled.

    Every string under a :data:`TEXT_KEYS` key is scrubbed, at any depth. The counts are those
    of the message's text as ``ingest`` will see it (:func:`message_text`), less what is still
    found in the redacted text (a secret split across rich-text leaves): ``ingest`` finds and
    counts that itself, so nothing is counted twice.
    """

    def __init__(self, hook: Any, config: ScrubConfig | None = None) -> None:
        self.hook = hook
        self.config = config

    def _scrub(self, text: str, counts: Counter[str] | None = None) -> str:
        def record(kind: str, n: int) -> None:
            if counts is not None:
                counts[kind] += n

        return scrub(self.hook, text, record, self.config) if text else text

    def _redact(self, value: Any, key: str | None) -> Any:
        if isinstance(value, str):
            return self._scrub(value) if key in TEXT_KEYS else value
        if isinstance(value, dict):
            return {k: self._redact(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact(v, key) for v in value]
        return value

    def __call__(self, message: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        found: Counter[str] = Counter()
        self._scrub(message_text(message), found)
        redacted: dict[str, Any] = self._redact(message, None)
        if not found:
            return redacted, {}
        left: Counter[str] = Counter()
        self._scrub(message_text(redacted), left)
        return redacted, dict(found - left)


def thread_scrubbed(thread: Thread, scrubbed: dict[str, dict[str, int]]) -> Counter[str]:
    """What was redacted from the thread's messages at journal time (``scrubbed``: by ts).

    Only messages that reach ``ingest`` with text count, as they would had ``ingest`` found them."""
    counts: Counter[str] = Counter()
    for message in thread.messages:
        if message.text and message.ts in scrubbed:
            counts.update(scrubbed[message.ts])
    return counts


@dataclass
class _Session:
    """What one source instance learned from Slack before reading threads."""

    caller: SlackCaller
    team: str
    team_name: str
    user_records: list[dict[str, Any]]
    users: list[User]


class SlackApiSource:
    """Scrapes a workspace through the Web API (``slack_sdk``), resumably."""

    name: ClassVar[str] = "slack"
    platform: ClassVar[str] = "Slack"  # named in system prompts

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        token: SecretStr | None = Field(
            None,
            description=f"Slack token (xoxb-…); null = ${TOKEN_ENV}. Prefer the environment variable: "
            "command lines end up in shell history",
        )
        api_url: str = Field(DEFAULT_API_URL, description="Web API base URL (a fake Slack server in tests)")
        team: ID | None = Field(None, description="team ID to file the workspace under; null = auth.test's")
        channels: list[str] | None = Field(
            None, description="only these channels (names, #names or IDs); null = every public channel"
        )
        include_private: bool = Field(
            False, description="also read private channels the token can see; DMs are never read"
        )
        join_channels: bool = Field(
            False, description="join public channels the bot is not in (needs channels:join) before reading"
        )
        cutoff_days: float | None = Field(
            None, gt=0, description="only threads started within the last N days; null = all history"
        )
        page_size: int = Field(
            200, ge=1, le=1000, description="messages to ask for per page (Slack may return fewer)"
        )
        max_concurrency: int = Field(4, ge=1, le=32, description="most Web API requests in flight at once")
        max_retries: int = Field(
            8,
            ge=0,
            le=100,
            description="retries of one request after a 429; 5xx and dropped connections: at most 5",
        )
        retry_backoff_s: float = Field(
            1.0,
            ge=0,
            description="first wait before retrying a 5xx or dropped connection (doubles each time)",
        )
        max_retry_after_s: float = Field(
            300.0, gt=0, description="longest Retry-After wait honoured (seconds)"
        )
        timeout_s: float = Field(30.0, gt=0, description="HTTP timeout of one request (seconds)")
        resume: bool = Field(
            True, description="continue an interrupted scrape from its checkpoint; false starts over"
        )

        @field_validator("team")
        @classmethod
        def _team_is_an_id(cls, value: str | None) -> str | None:
            return None if value is None else validate_safe_id(value, "team")

        @field_validator("channels")
        @classmethod
        def _channel_names(cls, value: list[str] | None) -> list[str] | None:
            if value is None:
                return None
            names = [str(v).strip().removeprefix("#") for v in value]
            if not all(names):
                raise ValueError("channel names must not be empty")
            return names

    def __init__(self, config: Config, context: RunContext) -> None:
        self.config = config
        self.context = context
        self._session: _Session | None = None

    def _redactor(self) -> MessageRedactor | None:
        """The journal's redaction: the run's ``scrub_message`` hooks with its ``scrub`` section."""
        if self.context.hook is None:
            return None
        return MessageScrubber(self.context.hook, self.context.settings.scrub)

    # -- connection ----------------------------------------------------------------------

    def _token(self) -> str:
        token = self.config.token.get_secret_value() if self.config.token else os.environ.get(TOKEN_ENV, "")
        if not token.strip():
            raise SlackAuthError(
                f"No Slack token: set {TOKEN_ENV}=xoxb-… (the app's Bot User OAuth Token) or source.token."
            )
        return token.strip()

    def _connect(self) -> _Session:
        if self._session is not None:
            return self._session
        hint = "source.token" if self.config.token else TOKEN_ENV
        caller = SlackCaller(
            self._token(),
            self.config.api_url,
            max_concurrency=self.config.max_concurrency,
            max_retries=self.config.max_retries,
            backoff_s=self.config.retry_backoff_s,
            max_retry_after_s=self.config.max_retry_after_s,
            timeout_s=self.config.timeout_s,
            token_hint=hint,
        )
        auth = caller.call("auth.test")
        team = self.config.team or auth.get("team_id")
        try:
            team = validate_safe_id(str(team), "team")
        except ValueError as exc:
            raise UserError(f"auth.test at {caller.api_url} gave {exc}; set source.team=T…") from None
        records = self._list(caller, "users.list", "members")
        users: dict[str, User] = {}
        for record in records:
            user = user_from_record(record)
            if user is not None:
                users.setdefault(user.id, user)
        self._session = _Session(caller, team, str(auth.get("team") or ""), records, list(users.values()))
        return self._session

    @staticmethod
    def _list(caller: SlackCaller, method: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a cursor-paged list method."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            response = caller.call(method, limit=LIST_PAGE_SIZE, cursor=cursor, **params)
            items.extend(i for i in response.get(key) or () if isinstance(i, dict))
            metadata = response.get("response_metadata") or {}
            next_cursor = metadata.get("next_cursor") if isinstance(metadata, dict) else None
            if not next_cursor or next_cursor == cursor:
                return items
            cursor = next_cursor

    def workspace(self) -> Workspace:
        session = self._connect()
        return Workspace(team=session.team, name=session.team_name, users=session.users)

    # -- planning ------------------------------------------------------------------------

    def _options(self, session: _Session) -> dict[str, Any]:
        """What a scrape reads: a checkpoint is resumed only by a run with the same options."""
        return {
            "api_url": session.caller.api_url,
            "channels": self.config.channels,
            "include_private": self.config.include_private,
            "cutoff_days": self.config.cutoff_days,
        }

    def _list_channels(self, session: _Session) -> tuple[list[ChannelRef], dict[str, str]]:
        """The channels to read, and the names of every channel this source may name in
        ``<#C…>`` mentions (archived ones too, as the export's channels.json lists them)."""
        types = "public_channel,private_channel" if self.config.include_private else "public_channel"
        listed = self._list(session.caller, "conversations.list", "channels", types=types)
        channels: dict[str, ChannelRef] = {}
        names: dict[str, str] = {}
        for raw in listed:
            channel_id, name = raw.get("id"), raw.get("name")
            if not isinstance(channel_id, str) or raw.get("is_im") or raw.get("is_mpim"):
                continue  # DMs and group DMs are never read, whatever a server returns
            private = bool(raw.get("is_private") or raw.get("is_group"))
            if private and not self.config.include_private:
                continue
            if isinstance(name, str) and name:
                names.setdefault(channel_id, name)
            if raw.get("is_archived"):
                continue
            channels.setdefault(
                channel_id,
                ChannelRef(
                    channel_id,
                    name if isinstance(name, str) and name else channel_id,
                    private,
                    bool(raw.get("is_member", True)),
                ),
            )
        ordered = sorted(channels.values(), key=lambda c: (c.name, c.id))  # as the export source
        if self.config.channels is None:
            return ordered, names
        wanted = {unicodedata.normalize("NFC", w) for w in self.config.channels}  # as typed on any system
        keys = {c.id: {c.id, unicodedata.normalize("NFC", c.name)} for c in ordered}
        unknown = [
            w
            for w in self.config.channels
            if not any(unicodedata.normalize("NFC", w) in k for k in keys.values())
        ]
        if unknown:
            available = ", ".join(c.name for c in ordered) or "none"
            raise ConfigError(
                [f"source.channels: no readable channel {w!r} (available: {available})" for w in unknown]
            )
        return [c for c in ordered if keys[c.id] & wanted], names

    def _plan(self, session: _Session, checkpoint: ScrapeCheckpoint) -> dict[str, Any]:
        console = self.context.console
        options = self._options(session)
        existing = checkpoint.load_plan()
        if existing is not None and self.config.resume and existing.get("options") == options:
            console.print(
                f"Resuming the scrape of {session.team} started {existing.get('started')} "
                f"(checkpoint: {checkpoint.root})."
            )
            return existing
        if existing is not None:
            console.print(f"Starting the scrape of {session.team} over (the previous one was not resumed).")
        checkpoint.clear()
        now = time.time()
        cutoff = self.config.cutoff_days
        channels, names = self._list_channels(session)
        plan = {
            "options": options,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "latest": f"{now:.6f}",  # fixed, so a resumed scrape reads the same span
            "oldest": None if cutoff is None else f"{now - cutoff * 86_400:.6f}",
            "channels": [c.to_json() for c in channels],
            "channel_names": names,
        }
        checkpoint.save_plan(plan)
        return plan

    # -- threads -------------------------------------------------------------------------

    def threads(self, report: DatasetReport) -> Iterator[Thread]:
        session = self._connect()
        checkpoint = ScrapeCheckpoint(scrape_dir(self.context.home, session.team))
        session.caller.resume_hint = (
            f"Progress is saved under {checkpoint.root}; run the same command again to resume."
        )
        bot_users = frozenset(u.id for u in session.users if u.is_bot)
        known_users = frozenset(u.id for u in session.users)
        bot_names = bot_names_from_users(session.user_records)
        redact = self._redactor()
        with checkpoint.locked():
            plan = self._plan(session, checkpoint)
            channels = [ChannelRef(**c) for c in plan["channels"]]
            channel_names = plan.get("channel_names") or {c.id: c.name for c in channels}
            with (
                _ScrapeProgress(self.context, len(channels)) as progress,
                ThreadPoolExecutor(self.config.max_concurrency, thread_name_prefix="slack-scrape") as pool,
            ):
                pages = PageSize(self.config.page_size, progress.note_cap)
                try:
                    for ref in channels:
                        progress.start_channel(ref.name)
                        fetched = self._channel_messages(
                            session, checkpoint, pool, ref, plan, pages, progress, report, redact
                        )
                        if fetched is not None:
                            raw, scrubbed = fetched
                            threads = assemble_threads(
                                raw,
                                team=session.team,
                                channel=ref,
                                report=report,
                                bot_users=bot_users,
                                bot_names=bot_names,
                                known_users=known_users,
                            )
                            del raw  # one channel in memory at a time
                            # <#C…> mentions by name, as the export source's workspace names them.
                            for thread in label_threads(threads, {}, channel_names):
                                # Redacted before journaling: ingest's own scrub finds nothing.
                                report.count_scrubbed(thread_scrubbed(thread, scrubbed))
                                yield thread
                        progress.finish_channel()
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)  # running fetches finish and journal
            checkpoint.finish()  # every thread was consumed: the raw messages are not kept

    def _channel_messages(
        self,
        session: _Session,
        checkpoint: ScrapeCheckpoint,
        pool: ThreadPoolExecutor,
        ref: ChannelRef,
        plan: dict[str, Any],
        pages: PageSize,
        progress: _ScrapeProgress,
        report: DatasetReport,
        redact: MessageRedactor | None,
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]] | None:
        """The channel's raw (redacted) messages, top level and replies, with what was scrubbed
        from them by message ts; None if the channel cannot be read."""
        if not ref.is_member and self.config.join_channels and not ref.private:
            session.caller.call("conversations.join", channel=ref.id)
        scraper = ChannelScraper(
            session.caller,
            pool,
            checkpoint.journal(ref.id, redact),
            ref,
            latest=plan["latest"],
            oldest=plan["oldest"],
            pages=pages,
            on_threads_found=progress.threads_found,
            on_thread_done=progress.thread_done,
        )
        try:
            fetched, resumed = scraper.fetch()
        except SlackCallError as exc:
            if exc.error not in ("not_in_channel", "channel_not_found"):
                raise
            report.drop(exc.error)
            hint = (
                " (invite the bot, or set source.join_channels=true)" if exc.error == "not_in_channel" else ""
            )
            progress.note(f"skipped #{ref.name}: {exc.error}{hint}")
            return None
        if resumed:
            progress.note(f"#{ref.name}: {resumed} threads from the checkpoint, not fetched again")
        raw = list(fetched.history.values())
        for messages in fetched.threads.values():
            raw.extend(messages)
        return raw, fetched.scrubbed


class _ScrapeProgress:
    """A rich progress bar on the run's console: channels done, threads fetched."""

    def __init__(self, context: RunContext, channels: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=context.console,
        )
        self.channels = self.progress.add_task("channels", total=channels)
        self.threads = self.progress.add_task("threads", total=0)
        self._found = 0
        self._lock = threading.Lock()

    def __enter__(self) -> _ScrapeProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start_channel(self, name: str) -> None:
        self.progress.update(self.channels, description=f"channels (#{name})")

    def finish_channel(self) -> None:
        self.progress.advance(self.channels)

    def threads_found(self, n: int) -> None:
        with self._lock:
            self._found += n
            self.progress.update(self.threads, total=self._found)

    def thread_done(self) -> None:
        self.progress.advance(self.threads)

    def note(self, text: str) -> None:
        self.progress.console.print(text)

    def note_cap(self, size: int) -> None:
        self.note(f"Slack returns at most {size} messages per page here; paging in {size}s (slower).")
