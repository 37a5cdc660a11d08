"""The ``slack_export`` source: threads from a Slack workspace export (zip or directory).

``doppelkit ingest source=slack_export source.path=export.zip persona.user=maya``

What is read: ``users.json``, ``channels.json`` and the day files of public channels; with
``source.include_private=true`` also ``groups.json`` and its folders. ``dms.json``,
``mpims.json`` and their folders are never read. Each channel's day files are read together
(a thread's replies often sit in later files than its root), turned into threads ordered by
numeric ``ts``, yielded, and dropped before the next channel: memory is bounded by the
largest channel. File access and its safety checks live in :mod:`doppelkit_slack.sources.reader`.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import math
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from doppelkit.errors import InputDataError
from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, Message, Thread, User, Workspace, validate_safe_id
from doppelkit_slack.sources.reader import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_UNCOMPRESSED_BYTES,
    GROUPS_FILE,
    Channel,
    SlackExport,
    is_dm_folder,
    open_export,
)

SAMPLE_WORKSPACE = Path(__file__).resolve().parents[1] / "sample"
SAMPLE_PERSONA = "U0MAYA0001"  # maya, the sample's most prolific writer (see sample_workspace.py)

# Subtypes that carry something a person (or bot) said. Every other subtype is a system event
# (joins, leaves, topic/purpose/name changes, pins, reminders, deleted-message tombstones, …)
# and is dropped, counted under its own name in the dataset report.
CONTENT_SUBTYPES = frozenset(
    {"thread_broadcast", "reply_broadcast", "me_message", "file_share", "bot_message", "slackbot_response"}
)
BOT_SUBTYPES = frozenset({"bot_message", "slackbot_response"})
# Legacy names, stored as today's so formatters see one name: older exports call a reply also
# sent to the channel ``reply_broadcast``.
SUBTYPE_ALIASES = {"reply_broadcast": "thread_broadcast"}
SLACKBOT = "USLACKBOT"  # users.json lists Slackbot with is_bot: false

M = TypeVar("M", bound=BaseModel)


class TrustedBuilder(Generic[M]):
    """Builds a pydantic model from values that are already the right types, skipping
    validation: ingest builds one Message per Slack message, and validating would cost more than
    parsing the JSON. Fields not passed get their declared defaults; a field without one fails
    here, at import, not at run time. A test checks results equal validated models.
    """

    def __init__(self, cls: type[M], provided: Iterable[str]) -> None:
        self.cls = cls
        provided = set(provided)
        self.defaults = [(n, f) for n, f in cls.model_fields.items() if n not in provided]
        required = [n for n, f in self.defaults if f.is_required()]
        if required:
            raise TypeError(f"{cls.__name__} needs {required}; the fast builder does not set them")
        # When every field is given, all instances can share one "fields set": pydantic only ever
        # adds names to it (on assignment), and every name is already there.
        self.fields_set = provided
        self.shared = not self.defaults

    def __call__(self, values: dict[str, Any]) -> M:
        obj = self.cls.__new__(self.cls)
        if self.shared:
            fields_set = self.fields_set
        else:
            fields_set = set(self.fields_set)
            for field_name, info in self.defaults:
                values[field_name] = info.get_default(call_default_factory=True)
        _set_attribute(obj, "__dict__", values)
        _set_attribute(obj, "__pydantic_fields_set__", fields_set)
        _set_attribute(obj, "__pydantic_extra__", None)
        _set_attribute(obj, "__pydantic_private__", None)
        return obj


_set_attribute = object.__setattr__
_message = TrustedBuilder(
    Message, ("ts", "user", "text", "is_bot", "subtype", "thread_ts", "edited", "files")
)
if not _message.shared:  # assemble_threads builds Messages inline, setting every field
    raise TypeError("doppelkit.models.Message gained a field: set it in assemble_threads")
_MESSAGE_FIELDS = _message.fields_set
_thread = TrustedBuilder(
    Thread, ("team", "channel", "channel_name", "ts", "messages", "private", "kind", "user_labels")
)


def user_from_record(raw: dict[str, Any]) -> User | None:
    """A :class:`User` from one ``users.json`` record (``None`` if it has no ID)."""
    user_id = raw.get("id")
    if not isinstance(user_id, str) or not user_id:
        return None
    profile = raw.get("profile") if isinstance(raw.get("profile"), dict) else {}

    def text(value: Any) -> str:
        return value.strip() if isinstance(value, str) else ""

    return User(
        id=user_id,
        name=text(raw.get("name")),
        display_name=text(profile.get("display_name")),
        real_name=text(raw.get("real_name")) or text(profile.get("real_name")),
        is_bot=bool(raw.get("is_bot")) or user_id == SLACKBOT,
        deleted=bool(raw.get("deleted")),
    )


def bot_names_from_users(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Bot ID (``B…``) → name, from the bot users of ``users.json`` (``profile.bot_id``)."""
    names: dict[str, str] = {}
    for raw in records:
        profile = raw.get("profile")
        if isinstance(profile, dict) and isinstance(profile.get("bot_id"), str):
            user = user_from_record(raw)
            if user is not None:
                names.setdefault(profile["bot_id"], user.label)
    return names


def _ts_text(value: Any) -> str | None:
    """A message timestamp as the string Slack uses, or None if it is not a number."""
    if isinstance(value, str):
        try:
            return value if math.isfinite(float(value)) else None
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.6f}"
    return None


def _bot_text(raw: dict[str, Any]) -> str:
    """Integrations often post with empty ``text`` and the words in attachments."""
    parts = []
    for attachment in raw.get("attachments") or ():
        if isinstance(attachment, dict):
            part = attachment.get("text") or attachment.get("fallback") or attachment.get("pretext")
            if isinstance(part, str) and part:
                parts.append(part)
    return "\n".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_STYLE_MARKS = (("code", "`"), ("bold", "*"), ("italic", "_"), ("strike", "~"))


def _inline_text(elements: Any) -> str:
    """Rich-text inline elements (``text``, ``user``, ``link``, ``emoji``, …) as mrkdwn."""
    out: list[str] = []
    for element in elements if isinstance(elements, list) else ():
        if not isinstance(element, dict):
            continue
        kind = element.get("type")
        if kind == "text":
            text = _escape(str(element.get("text") or ""))
            style = element.get("style")
            if text.strip() and isinstance(style, dict):
                for key, mark in _STYLE_MARKS:
                    if style.get(key):
                        text = f"{mark}{text}{mark}"
            out.append(text)
        elif kind == "user" and element.get("user_id"):
            out.append(f"<@{element['user_id']}>")
        elif kind == "channel" and element.get("channel_id"):
            out.append(f"<#{element['channel_id']}>")
        elif kind == "usergroup" and element.get("usergroup_id"):
            out.append(f"<!subteam^{element['usergroup_id']}>")
        elif kind == "broadcast" and element.get("range"):
            out.append(f"<!{element['range']}>")
        elif kind == "link" and element.get("url"):
            url, label = _escape(str(element["url"])), element.get("text")
            out.append(f"<{url}|{_escape(label)}>" if isinstance(label, str) and label else f"<{url}>")
        elif kind == "emoji" and element.get("name"):
            tone = element.get("skin_tone")
            out.append(f":{element['name']}:" + (f":skin-tone-{tone}:" if tone else ""))
        elif kind == "date":
            out.append(_escape(str(element.get("fallback") or "")))
        elif kind == "color" and element.get("value"):
            out.append(_escape(str(element["value"])))
    return "".join(out)


def _rich_text(elements: Any) -> list[str]:
    """The parts of a ``rich_text`` block: sections, code blocks, quotes and lists."""
    parts: list[str] = []
    for element in elements if isinstance(elements, list) else ():
        if not isinstance(element, dict):
            continue
        kind, inner = element.get("type"), element.get("elements")
        if kind == "rich_text_section":
            parts.append(_inline_text(inner))
        elif kind == "rich_text_preformatted":
            parts.append(f"```{_inline_text(inner)}```")
        elif kind == "rich_text_quote":
            parts.append("\n".join("&gt; " + line for line in _inline_text(inner).split("\n")))
        elif kind == "rich_text_list":
            indent = "    " * int(element.get("indent") or 0)
            ordered = element.get("style") == "ordered"
            items = [_inline_text(item.get("elements")) for item in inner or () if isinstance(item, dict)]
            parts.append(
                "\n".join(f"{indent}{f'{n}.' if ordered else '•'} {item}" for n, item in enumerate(items, 1))
            )
    return parts


def _blocks_text(raw: dict[str, Any]) -> str:
    """The words of a message whose ``text`` is empty but whose ``blocks`` hold them (rich text
    from newer clients, Workflow Builder), as the mrkdwn Slack would have put in ``text``."""
    parts: list[str] = []
    for block in raw.get("blocks") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "rich_text":
            parts.extend(_rich_text(block.get("elements")))
        elif kind in ("section", "header") and isinstance(block.get("text"), dict):
            parts.append(str(block["text"].get("text") or ""))
        elif kind == "context":
            for element in block.get("elements") or ():
                if isinstance(element, dict) and isinstance(element.get("text"), str):
                    parts.append(element["text"])
    return "\n".join(part.strip("\n") for part in parts if part.strip())


def _bot_name(raw: dict[str, Any], known: Mapping[str, str], bot_id: str) -> str | None:
    profile = raw.get("bot_profile")
    for name in (
        raw.get("username"),
        profile.get("name") if isinstance(profile, dict) else None,
        known.get(bot_id),
    ):
        if isinstance(name, str) and name.strip():
            return name.strip()
    return None


def assemble_threads(
    raw_messages: Iterable[Any],
    *,
    team: str,
    channel: Channel,
    report: DatasetReport,
    bot_users: Collection[str] = (),
    bot_names: Mapping[str, str] | None = None,
) -> list[Thread]:
    """Turn one channel's raw messages (from all its day files, any order) into threads.

    A thread is a root and every message whose ``thread_ts`` names it, ordered by numeric
    ``ts``; a top-level message without replies is a one-message thread; replies whose root is
    missing still form a thread (its ``ts`` is their ``thread_ts``). A message seen twice (the
    same ``ts``, e.g. a ``thread_broadcast`` exported in the channel and the thread) is kept
    once, in its thread. Threads are returned sorted by root ``ts``.

    ``bot_users`` are user IDs that are bots (``is_bot`` in users.json; Slackbot always is);
    ``bot_names`` maps bot IDs (``B…``) to names, used for the threads' ``user_labels`` along
    with the messages' own ``username``/``bot_profile``. System subtypes and hidden messages
    are counted in ``report``. A message whose ``text`` is empty but whose rich-text ``blocks``
    hold words gets its text rebuilt from them (:func:`_blocks_text`); ``reply_broadcast`` is
    stored as ``thread_broadcast``.
    """
    known_bots = bot_names or {}
    # Slackbot is a bot whether or not users.json (or users.list) lists it, and it is listed
    # with is_bot: false when it is.
    bot_users = frozenset(bot_users) | {SLACKBOT}
    drops: Counter[str] = Counter()
    # ts → (numeric ts, thread root ts, message). Raw records become small Messages as they
    # stream in, so a channel's parsed JSON is never held all at once. This loop runs once per
    # message of the workspace: it is written for speed (no per-message validation or calls).
    by_ts: dict[str, tuple[float, str, Message]] = {}
    labels: dict[str, dict[str, str]] = {}
    message_cls, new, set_attribute, fields_set = Message, Message.__new__, _set_attribute, _MESSAGE_FIELDS
    isfinite, content_subtypes, bot_subtypes = math.isfinite, CONTENT_SUBTYPES, BOT_SUBTYPES
    for raw in raw_messages:
        if raw.__class__ is not dict:
            drops["malformed"] += 1
            continue
        subtype = raw.get("subtype")
        if subtype is not None and subtype not in content_subtypes:
            drops["deleted" if subtype == "tombstone" else str(subtype)] += 1
            continue
        ts = raw.get("ts")
        if ts.__class__ is not str:
            ts = _ts_text(ts)
            if ts is None:
                drops["malformed"] += 1
                continue
        try:
            ts_key = float(ts)
        except ValueError:
            ts_key = math.nan
        if not isfinite(ts_key):
            drops["malformed"] += 1
            continue
        if raw.get("hidden"):
            drops["hidden"] += 1
            continue
        bot_id = raw.get("bot_id")
        user = raw.get("user")
        is_bot = bool(bot_id) or subtype in bot_subtypes or user in bot_users
        if is_bot:
            # Bots are context, never a persona: they are filed under their bot ID, if any.
            user = bot_id if bot_id.__class__ is str and bot_id else None
        elif user.__class__ is not str or not user:
            user = None
        text = raw.get("text")
        if text.__class__ is not str:
            text = "" if text is None else str(text)
        if not text and "blocks" in raw:
            text = _blocks_text(raw)
        if not text and is_bot:
            text = _bot_text(raw)
        thread_ts = raw.get("thread_ts")
        if thread_ts is not None and thread_ts.__class__ is not str:
            thread_ts = _ts_text(thread_ts)
        files = raw.get("files")
        message = new(message_cls)  # see TrustedBuilder: the same steps, inlined
        set_attribute(
            message,
            "__dict__",
            {
                "ts": ts,
                "user": user,
                "text": text,
                "is_bot": is_bot,
                "subtype": SUBTYPE_ALIASES.get(subtype, subtype) if subtype.__class__ is str else None,
                "thread_ts": thread_ts,
                "edited": "edited" in raw,
                "files": len(files) if files.__class__ is list else 0,
            },
        )
        set_attribute(message, "__pydantic_fields_set__", fields_set)
        set_attribute(message, "__pydantic_extra__", None)
        set_attribute(message, "__pydantic_private__", None)
        root = thread_ts or ts
        by_ts[ts] = (ts_key, root, message)  # the same ts twice (a re-exported broadcast): kept once
        if is_bot and user:
            name = _bot_name(raw, known_bots, user)
            if name:
                labels.setdefault(root, {})[user] = name

    # One sort by numeric ts (stable: equal timestamps keep file order) orders every thread.
    groups: dict[str, list[Message]] = {}
    root_keys: dict[str, float] = {}
    for ts_key, root, message in sorted(by_ts.values(), key=itemgetter(0)):
        group = groups.get(root)
        if group is not None:
            group.append(message)
            continue
        if root == message.ts:
            root_keys[root] = ts_key
        else:
            root_key = _ts_number(root)
            if root_key is None:  # a thread_ts that is not a timestamp: the message stands alone
                message.__dict__["thread_ts"] = None
                root, root_key = message.ts, ts_key
                if root in groups:
                    groups[root].append(message)
                    continue
            root_keys[root] = root_key
        groups[root] = [message]

    threads = []
    channel_id, channel_name, private = channel.id, channel.name, channel.private
    for root in sorted(groups, key=root_keys.__getitem__):
        threads.append(
            _thread(
                {
                    "team": team,
                    "channel": channel_id,
                    "channel_name": channel_name,
                    "ts": root,
                    "messages": groups[root],
                    "private": private,
                    "kind": "thread",
                    "user_labels": labels.get(root, {}),
                }
            )
        )
    for reason, n in drops.items():
        report.drop(reason, n)
    return threads


def _ts_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a channel is read.

    Parsing JSON and building Messages allocates hundreds of thousands of objects that all stay
    alive until the channel's threads are built; each allocation burst makes the collector
    re-scan them, which costs more than the reading itself. None of them form reference cycles,
    so nothing is missed: reference counting frees them as usual. The collector runs again
    before any thread is yielded to the caller.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class SlackExportSource:
    """Reads a Slack workspace export: public channels only unless ``include_private``."""

    name: ClassVar[str] = "slack_export"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        path: Path | None = Field(
            None,
            description="Slack export .zip or unzipped folder; null reads the bundled sample workspace",
        )
        include_private: bool = Field(
            False,
            description="also read private channels (groups.json and their folders); DMs are never read",
        )
        team: str | None = Field(
            None, description="team ID to file the workspace under; null = the team_id in users.json"
        )
        max_uncompressed_bytes: int = Field(
            DEFAULT_MAX_UNCOMPRESSED_BYTES,
            gt=0,
            description="refuse a zip whose contents inflate past this many bytes (zip-bomb guard)",
        )
        max_file_bytes: int = Field(
            DEFAULT_MAX_FILE_BYTES, gt=0, description="skip any single file larger than this"
        )

        @field_validator("team")
        @classmethod
        def _team_is_an_id(cls, value: str | None) -> str | None:
            return None if value is None else validate_safe_id(value, "team")

    def __init__(self, config: Config, context: RunContext) -> None:
        self.config = config
        self.context = context

    @property
    def path(self) -> Path:
        return self.config.path if self.config.path is not None else SAMPLE_WORKSPACE

    def open(self) -> SlackExport:
        """The export, opened with this source's size limits."""
        return open_export(
            self.path,
            max_uncompressed_bytes=self.config.max_uncompressed_bytes,
            max_file_bytes=self.config.max_file_bytes,
        )

    def _team(self, export: SlackExport, users: list[User]) -> str:
        if self.config.team:
            return self.config.team
        team = export.team_id()
        if team is None:
            # Old exports carry no team_id: derive a stable ID from the members instead.
            digest = hashlib.sha256("\n".join(sorted(u.id for u in users)).encode()).hexdigest()
            return f"export-{digest[:10]}"
        try:
            return validate_safe_id(team, "team")
        except ValueError as exc:
            raise InputDataError(f"{export.label}: users.json has {exc}; set source.team=T…") from None

    @staticmethod
    def _users(export: SlackExport) -> list[User]:
        users: dict[str, User] = {}
        for raw in export.users():
            user = user_from_record(raw)
            if user is not None:
                users.setdefault(user.id, user)
        return list(users.values())

    def workspace(self) -> Workspace:
        with self.open() as export:
            users = self._users(export)
            # The bundled sample names its demo persona, so a bare `doppelkit` just runs.
            default = SAMPLE_PERSONA if self.config.path is None else None
            return Workspace(team=self._team(export, users), users=users, default_persona=default)

    def threads(self, report: DatasetReport) -> Iterator[Thread]:
        with self.open() as export:
            users = self._users(export)
            team = self._team(export, users)
            bot_users = frozenset(u.id for u in users if u.is_bot)
            bot_names = bot_names_from_users(export.users())
            channels = export.channels(include_private=self.config.include_private)
            for path, reason in export.ignored:
                report.skip_file(path, reason)
            self._account_for_unread_folders(export, channels, report)
            for channel in channels:
                if channel.folder is None:
                    continue  # listed, but no messages were exported
                # A generator: each day file's parsed JSON is dropped once it is consumed.
                raw = (m for _, day in export.iter_day_files(channel, on_skip=report.skip_file) for m in day)
                with cyclic_gc_paused():
                    threads = assemble_threads(
                        raw,
                        team=team,
                        channel=channel,
                        report=report,
                        bot_users=bot_users,
                        bot_names=bot_names,
                    )
                yield from threads

    def _account_for_unread_folders(
        self, export: SlackExport, channels: list[Channel], report: DatasetReport
    ) -> None:
        """Count (never open) the conversation folders this run does not read."""
        read = {c.folder for c in channels}
        private_listed = export.has(GROUPS_FILE) and not self.config.include_private
        for folder in export.folders():
            if folder in read:
                continue
            if is_dm_folder(folder):
                report.drop("direct_message")
            elif private_listed:
                # Not public and private channels exist: counted, not named (names can be sensitive).
                report.drop("private_channel")
            else:
                report.skip_file(folder + "/", "folder not listed in channels.json; ignored")
