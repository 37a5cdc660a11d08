"""The in-memory Slack workspace behind :class:`~doppelkit_slack.testing.FakeSlack`.

This module holds the workspace's *state* (team, users, conversations and their messages) and
implements the Web API *methods* as plain functions of a parameter dict: each returns the
response body Slack would send, or raises :class:`SlackError` for ``{"ok": false, ...}``.
HTTP, tokens, rate limits, fault injection and call counting live in
:mod:`doppelkit_slack.testing.fake_slack`; nothing here knows about sockets.

Message semantics follow Slack's: ``conversations.history`` returns top-level messages and
thread broadcasts, newest first; ``conversations.replies`` returns a thread's root then its
replies, oldest first; a thread root carries ``thread_ts``/``reply_count``/``latest_reply``
computed from the replies actually present. A thread whose root is missing from an export
(deleted) gets a ``tombstone`` root, as Slack shows one.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from doppelkit_slack.sources.reader import Channel, SlackExport, open_export

__all__ = ["Conversation", "FakeWorkspace", "Post", "SlackError"]

Kind = Literal["public", "private", "im", "mpim"]
Params = Mapping[str, Any]

# conversations.list ``types`` → conversation kind, and the scopes each kind needs.
TYPE_KINDS: dict[str, Kind] = {
    "public_channel": "public",
    "private_channel": "private",
    "im": "im",
    "mpim": "mpim",
}
READ_SCOPES: dict[Kind, str] = {
    "public": "channels:read",
    "private": "groups:read",
    "im": "im:read",
    "mpim": "mpim:read",
}
HISTORY_SCOPES: dict[Kind, str] = {
    "public": "channels:history",
    "private": "groups:history",
    "im": "im:history",
    "mpim": "mpim:history",
}
METHOD_SCOPES: dict[str, str] = {
    "team.info": "team:read",
    "users.list": "users:read",
    "users.info": "users:read",
    "bots.info": "users:read",
    "conversations.join": "channels:join",
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
}
# Fields of a thread root that describe its replies; recomputed from the replies present.
THREAD_FIELDS = ("reply_count", "reply_users", "reply_users_count", "latest_reply")
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_TEXT = 40_000  # chat.postMessage truncates/refuses beyond this


class SlackError(Exception):
    """A Web API error: becomes ``{"ok": false, "error": error, **extra}`` (HTTP 200)."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, **self.extra}


@dataclass
class Post:
    """One ``chat.postMessage`` the fake accepted (what a bot posted, for assertions)."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None
    username: str | None
    icon_url: str | None
    icon_emoji: str | None
    params: dict[str, Any]


def ts_key(ts: str) -> float:
    return float(ts)


def _ts_text(value: Any) -> str | None:
    """A message ts as Slack's string, or None when it is not a number (malformed record)."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return None
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.6f}"
    return None


def is_reply(message: Mapping[str, Any]) -> bool:
    """In a thread but not its root."""
    thread_ts = message.get("thread_ts")
    return isinstance(thread_ts, str) and thread_ts != message["ts"]


def is_top_level(message: Mapping[str, Any]) -> bool:
    """Shown in the channel: roots, plain messages and replies broadcast to the channel."""
    return not is_reply(message) or message.get("subtype") == "thread_broadcast"


def tombstone(ts: str) -> dict[str, Any]:
    """What Slack leaves in place of a deleted message that has replies."""
    return {
        "type": "message",
        "subtype": "tombstone",
        "hidden": True,
        "user": "USLACKBOT",
        "text": "This message was deleted.",
        "ts": ts,
        "thread_ts": ts,
    }


@dataclass
class Conversation:
    """A channel, private channel, DM or group DM, with its messages keyed by ``ts``."""

    id: str
    kind: Kind
    record: dict[str, Any]  # as exported: name, created, creator, topic, purpose, is_archived, …
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    _top: list[str] | None = field(default=None, repr=False)  # top-level ts, oldest first
    _threads: dict[str, list[str]] | None = field(default=None, repr=False)  # root → reply ts

    @property
    def name(self) -> str:
        name = self.record.get("name")
        return name if isinstance(name, str) and name else self.id

    def changed(self) -> None:
        """Forget the derived indexes after a mutation (rebuilt on next read)."""
        self._top = self._threads = None

    def _index(self) -> tuple[list[str], dict[str, list[str]]]:
        if self._top is None or self._threads is None:
            top: list[str] = []
            threads: dict[str, list[str]] = {}
            for ts, message in self.messages.items():
                if is_reply(message):
                    threads.setdefault(message["thread_ts"], []).append(ts)
                if is_top_level(message):
                    top.append(ts)
            top.sort(key=ts_key)
            for replies in threads.values():
                replies.sort(key=ts_key)
            self._top, self._threads = top, threads
        return self._top, self._threads

    def top_level(self) -> list[str]:
        return self._index()[0]

    def replies(self, root_ts: str) -> list[str]:
        return self._index()[1].get(root_ts, [])

    def add_missing_roots(self) -> None:
        """Give replies whose root is not in the data a tombstone root, as Slack does."""
        for root in list(self._index()[1]):
            if root not in self.messages:
                self.messages[root] = tombstone(root)
        self.changed()

    def served(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message as the API returns it: roots carry their thread summary."""
        replies = self.replies(message["ts"]) if not is_reply(message) else []
        if not replies:
            return message
        users: list[str] = []
        for ts in replies:
            user = self.messages[ts].get("user")
            if isinstance(user, str) and user not in users:
                users.append(user)
        return {
            **message,
            "thread_ts": message["ts"],
            "reply_count": len(replies),
            "reply_users": users[:5],
            "reply_users_count": len(users),
            "latest_reply": replies[-1],
        }


@dataclass(frozen=True)
class BotIdentity:
    """The app the token belongs to: who ``auth.test`` says we are and who posts."""

    user_id: str = "U0FAKEBOT1"
    bot_id: str = "B0FAKEBOT1"
    app_id: str = "A0FAKEAPP1"
    name: str = "doppelkit"

    def user_record(self, team_id: str) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "team_id": team_id,
            "name": self.name,
            "deleted": False,
            "real_name": self.name,
            "is_bot": True,
            "is_app_user": False,
            "profile": {"real_name": self.name, "display_name": "", "bot_id": self.bot_id},
        }


def _encode_cursor(kind: str, value: str | int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def _decode_cursor(cursor: str, kind: str) -> str:
    try:
        got_kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SlackError("invalid_cursor") from None
    if got_kind != kind or not value:
        raise SlackError("invalid_cursor")
    return value


def _param(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _required(params: Params, name: str, error: str) -> str:
    value = _param(params, name)
    if value is None:
        raise SlackError(error)
    return value


def _flag(params: Params, name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes"}


def _number(params: Params, name: str, default: float) -> float:
    value = _param(params, name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise SlackError("invalid_arguments", detail=f"{name} must be a number") from None


class FakeWorkspace:
    """A Slack workspace in memory; :meth:`call` runs one Web API method.

    ``max_page_size`` silently caps ``limit`` on ``conversations.history`` and
    ``conversations.replies`` (Slack caps non-Marketplace apps at 15). ``scopes`` are the
    token's OAuth scopes (``None``: every scope); a method needing one that is missing fails
    with ``missing_scope`` and ``needed``. ``joined`` holds the conversations the bot is a
    member of (``None``: all of them); reading or posting elsewhere fails with
    ``not_in_channel`` until ``conversations.join``.
    """

    def __init__(
        self,
        *,
        team_id: str,
        team_name: str = "Fake Workspace",
        domain: str = "fake-workspace",
        users: Iterable[dict[str, Any]] = (),
        conversations: Iterable[Conversation] = (),
        bot: BotIdentity | None = None,
        max_page_size: int | None = None,
        scopes: Collection[str] | None = None,
        joined: Collection[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.team_id, self.team_name, self.domain = team_id, team_name, domain
        self.bot = bot or BotIdentity()
        self.users: dict[str, dict[str, Any]] = {}
        for record in users:
            if isinstance(record.get("id"), str):
                self.users.setdefault(record["id"], record)
        self.users.setdefault(self.bot.user_id, self.bot.user_record(team_id))
        self.conversations: dict[str, Conversation] = {c.id: c for c in conversations}
        self.max_page_size = max_page_size
        self.scopes = None if scopes is None else set(scopes)
        self.joined = None if joined is None else {self.resolve(c).id for c in joined}
        self.posts: list[Post] = []
        self.clock = clock
        self._last_ts = 0.0
        self.lock = threading.RLock()
        self.methods: dict[str, Callable[[Params], dict[str, Any]]] = {
            "api.test": self.api_test,
            "auth.test": self.auth_test,
            "team.info": self.team_info,
            "users.list": self.users_list,
            "users.info": self.users_info,
            "bots.info": self.bots_info,
            "conversations.list": self.conversations_list,
            "conversations.info": self.conversations_info,
            "conversations.history": self.conversations_history,
            "conversations.replies": self.conversations_replies,
            "conversations.join": self.conversations_join,
            "conversations.members": self.conversations_members,
            "chat.postMessage": self.chat_post_message,
            "chat.update": self.chat_update,
            "chat.delete": self.chat_delete,
        }

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def from_export(
        cls,
        path: str | Path,
        *,
        team_id: str | None = None,
        on_skip: Callable[[str, str], None] | None = None,
        **options: Any,
    ) -> FakeWorkspace:
        """A workspace holding everything in a Slack export (zip or folder): public channels,
        and private channels, DMs and group DMs when the export has them. ``on_skip(path,
        reason)`` hears about unreadable day files (skipped)."""
        skip = on_skip or (lambda path, reason: None)
        with open_export(path) as export:
            users = export.users()
            conversations = [
                _conversation(export, channel, "private" if channel.private else "public", skip)
                for channel in export.channels(include_private=True)
            ]
            conversations += _direct_conversations(export, skip)
            return cls(
                team_id=team_id or export.team_id() or "T0FAKETEAM",
                users=users,
                conversations=conversations,
                **options,
            )

    # -- helpers -------------------------------------------------------------------------

    def app_dm(self, user: str) -> Conversation:
        """The bot's direct message with ``user`` (created on first use, as Slack does)."""
        with self.lock:
            for conversation in self.conversations.values():
                if conversation.kind == "im" and conversation.record.get("user") == user:
                    return conversation
            dm_id = "D" + user[1:]
            conversation = Conversation(dm_id, "im", {"id": dm_id, "user": user, "is_im": True})
            self.conversations[dm_id] = conversation
            return conversation

    def resolve(self, channel: str) -> Conversation:
        """A conversation by ID, or by name (``general``/``#general``) for convenience."""
        found = self.conversations.get(channel)
        if found is None:
            name = channel.removeprefix("#")
            found = next((c for c in self.conversations.values() if c.record.get("name") == name), None)
        if found is None:
            raise SlackError("channel_not_found")
        return found

    def require_scope(self, scope: str) -> None:
        if self.scopes is not None and scope not in self.scopes:
            raise SlackError("missing_scope", needed=scope, provided=",".join(sorted(self.scopes)))

    def is_member(self, conversation: Conversation) -> bool:
        return self.joined is None or conversation.id in self.joined

    def _readable(self, params: Params, scopes: Mapping[Kind, str]) -> Conversation:
        conversation = self.resolve(_required(params, "channel", "channel_not_found"))
        self.require_scope(scopes[conversation.kind])
        if not self.is_member(conversation):
            raise SlackError("not_in_channel")
        return conversation

    def next_ts(self) -> str:
        """A fresh, strictly increasing message ts (Slack's microsecond string)."""
        now = max(self.clock(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    def page_size(self, params: Params, *, capped: bool, default: int = DEFAULT_PAGE) -> int:
        """The page size the server actually uses: ``limit`` within bounds, maybe capped."""
        try:
            limit = int(_number(params, "limit", default)) or default
        except SlackError:
            limit = default
        limit = max(1, min(limit, MAX_PAGE))
        if capped and self.max_page_size:
            limit = min(limit, self.max_page_size)
        return limit

    def call(self, method: str, params: Params) -> dict[str, Any]:
        """Run one Web API method; raises :class:`SlackError` for ``ok: false`` answers."""
        handler = self.methods.get(method)
        if handler is None:
            raise SlackError("unknown_method")
        if method in METHOD_SCOPES:
            self.require_scope(METHOD_SCOPES[method])
        with self.lock:
            return handler(params)

    def add_message(self, channel: str, message: dict[str, Any]) -> dict[str, Any]:
        """Put a raw message into a conversation (tests seeding a thread). ``ts`` defaults to
        a fresh one; returns the stored message."""
        with self.lock:
            conversation = self.resolve(channel)
            stored = {"type": "message", **message}
            stored["ts"] = _ts_text(stored.get("ts")) or self.next_ts()
            conversation.messages[stored["ts"]] = stored
            conversation.changed()
            return stored

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """A thread's messages as served (root first), for assertions."""
        with self.lock:
            conversation = self.resolve(channel)
            ids = [ts, *conversation.replies(ts)] if ts in conversation.messages else conversation.replies(ts)
            return [conversation.served(conversation.messages[t]) for t in ids]

    # -- identity ------------------------------------------------------------------------

    def api_test(self, params: Params) -> dict[str, Any]:
        return {"ok": True, "args": {k: v for k, v in params.items() if k != "token"}}

    def auth_test(self, params: Params) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{self.domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot.name,
            "team_id": self.team_id,
            "user_id": self.bot.user_id,
            "bot_id": self.bot.bot_id,
            "is_enterprise_install": False,
        }

    def team_info(self, params: Params) -> dict[str, Any]:
        team = _param(params, "team")
        if team is not None and team != self.team_id:
            raise SlackError("team_not_found")
        return {
            "ok": True,
            "team": {
                "id": self.team_id,
                "name": self.team_name,
                "domain": self.domain,
                "email_domain": "",
                "icon": {"image_default": True},
            },
        }

    # -- users and bots ------------------------------------------------------------------

    def users_list(self, params: Params) -> dict[str, Any]:
        members = list(self.users.values())
        page, cursor = _offset_page(members, params, self.page_size(params, capped=False, default=MAX_PAGE))
        return {
            "ok": True,
            "members": page,
            "cache_ts": int(self.clock()),
            "response_metadata": {"next_cursor": cursor},
        }

    def users_info(self, params: Params) -> dict[str, Any]:
        user = self.users.get(_required(params, "user", "user_not_found"))
        if user is None:
            raise SlackError("user_not_found")
        return {"ok": True, "user": user}

    def bots_info(self, params: Params) -> dict[str, Any]:
        bot_id = _required(params, "bot", "bot_not_found")
        if bot_id == self.bot.bot_id:
            return {"ok": True, "bot": self._bot(bot_id, self.bot.name, self.bot.user_id, self.bot.app_id)}
        for user in self.users.values():
            profile = user.get("profile")
            if isinstance(profile, dict) and profile.get("bot_id") == bot_id:
                return {
                    "ok": True,
                    "bot": self._bot(bot_id, user.get("real_name") or user["id"], user["id"], ""),
                }
        for conversation in self.conversations.values():
            for message in conversation.messages.values():
                profile = message.get("bot_profile")
                if message.get("bot_id") == bot_id and isinstance(profile, dict):
                    return {"ok": True, "bot": {"deleted": False, "updated": 0, **profile, "id": bot_id}}
        raise SlackError("bot_not_found")

    @staticmethod
    def _bot(bot_id: str, name: str, user_id: str, app_id: str) -> dict[str, Any]:
        return {
            "id": bot_id,
            "deleted": False,
            "name": name,
            "updated": 0,
            "app_id": app_id,
            "user_id": user_id,
        }

    # -- conversations -------------------------------------------------------------------

    def channel_object(self, conversation: Conversation) -> dict[str, Any]:
        """The conversation object of ``conversations.list``/``info``."""
        record = conversation.record
        if conversation.kind == "im":
            others = [m for m in conversation.members if m != self.bot.user_id]
            return {
                "id": conversation.id,
                "created": record.get("created", 0),
                "is_im": True,
                "is_org_shared": False,
                "user": record.get("user") or (others[0] if others else ""),
                "is_user_deleted": False,
                "priority": 0,
            }
        private = conversation.kind != "public"
        return {
            "id": conversation.id,
            "name": conversation.name,
            "name_normalized": conversation.name,
            "is_channel": not private,
            "is_group": private,
            "is_im": False,
            "is_mpim": conversation.kind == "mpim",
            "is_private": private,
            "is_archived": bool(record.get("is_archived")),
            "is_general": bool(record.get("is_general")),
            "created": record.get("created", 0),
            "creator": record.get("creator", ""),
            "is_member": self.is_member(conversation),
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "topic": record.get("topic") or {"value": "", "creator": "", "last_set": 0},
            "purpose": record.get("purpose") or {"value": "", "creator": "", "last_set": 0},
            "num_members": len(conversation.members),
        }

    def conversations_list(self, params: Params) -> dict[str, Any]:
        requested = (_param(params, "types") or "public_channel").split(",")
        kinds: set[Kind] = set()
        for name in (t.strip() for t in requested if t.strip()):
            if name not in TYPE_KINDS:
                raise SlackError("invalid_types")
            kinds.add(TYPE_KINDS[name])
        for kind in sorted(kinds):
            self.require_scope(READ_SCOPES[kind])
        exclude_archived = _flag(params, "exclude_archived")
        listed = [
            self.channel_object(c)
            for c in self.conversations.values()
            if c.kind in kinds and not (exclude_archived and c.record.get("is_archived"))
        ]
        page, cursor = _offset_page(listed, params, self.page_size(params, capped=False))
        return {"ok": True, "channels": page, "response_metadata": {"next_cursor": cursor}}

    def conversations_info(self, params: Params) -> dict[str, Any]:
        conversation = self.resolve(_required(params, "channel", "channel_not_found"))
        self.require_scope(READ_SCOPES[conversation.kind])
        return {"ok": True, "channel": self.channel_object(conversation)}

    def conversations_members(self, params: Params) -> dict[str, Any]:
        conversation = self.resolve(_required(params, "channel", "channel_not_found"))
        self.require_scope(READ_SCOPES[conversation.kind])
        page, cursor = _offset_page(conversation.members, params, self.page_size(params, capped=False))
        return {"ok": True, "members": page, "response_metadata": {"next_cursor": cursor}}

    def conversations_join(self, params: Params) -> dict[str, Any]:
        conversation = self.resolve(_required(params, "channel", "channel_not_found"))
        if conversation.kind != "public":
            raise SlackError("method_not_supported_for_channel_type")
        if conversation.record.get("is_archived"):
            raise SlackError("is_archived")
        response: dict[str, Any] = {"ok": True}
        if self.is_member(conversation):
            response["warning"] = "already_in_channel"
            response["response_metadata"] = {"warnings": ["already_in_channel"]}
        elif self.joined is not None:
            self.joined.add(conversation.id)
        if self.bot.user_id not in conversation.members:
            conversation.members.append(self.bot.user_id)
        response["channel"] = self.channel_object(conversation)
        return response

    def conversations_history(self, params: Params) -> dict[str, Any]:
        conversation = self._readable(params, HISTORY_SCOPES)
        oldest, latest, inclusive = _bounds(params, self.clock())
        before = float("inf")
        if cursor := _param(params, "cursor"):
            before = ts_key(_decode_cursor(cursor, "history"))
        limit = self.page_size(params, capped=True)
        newest_first = [
            ts
            for ts in reversed(conversation.top_level())
            if ts_key(ts) < before and _within(ts_key(ts), oldest, latest, inclusive)
        ]
        response = _message_page(conversation, newest_first, limit, params, "history")
        response.update(pin_count=0, channel_actions_ts=None, channel_actions_count=0)
        return response

    def conversations_replies(self, params: Params) -> dict[str, Any]:
        conversation = self._readable(params, HISTORY_SCOPES)
        root = _required(params, "ts", "thread_not_found")
        message = conversation.messages.get(root)
        if message is not None and is_reply(message):
            thread = [root]  # a reply's own ts: Slack answers with just that message
        elif message is not None:
            thread = [root, *conversation.replies(root)]
        else:
            raise SlackError("thread_not_found")
        oldest, latest, inclusive = _bounds(params, self.clock())
        after = float("-inf")
        if cursor := _param(params, "cursor"):
            after = ts_key(_decode_cursor(cursor, "replies"))
        limit = self.page_size(params, capped=True, default=1000)
        oldest_first = [  # the root only on the first page
            ts for ts in thread if ts_key(ts) > after and _within(ts_key(ts), oldest, latest, inclusive)
        ]
        return _message_page(conversation, oldest_first, limit, params, "replies")

    # -- chat ----------------------------------------------------------------------------

    def _postable(self, params: Params) -> Conversation:
        channel = _required(params, "channel", "channel_not_found")
        if channel[:1] in ("U", "W") and channel in self.users:
            return self.app_dm(channel)  # Slack posts to a user ID in the app's DM with them
        conversation = self.resolve(channel)
        if conversation.record.get("is_archived"):
            raise SlackError("is_archived")
        if not self.is_member(conversation):
            raise SlackError("not_in_channel")
        return conversation

    def _own(self, conversation: Conversation, params: Params, error: str) -> dict[str, Any]:
        message = conversation.messages.get(_required(params, "ts", "message_not_found"))
        if message is None:
            raise SlackError("message_not_found")
        if message.get("user") != self.bot.user_id and message.get("bot_id") != self.bot.bot_id:
            raise SlackError(error)
        return message

    def chat_post_message(self, params: Params) -> dict[str, Any]:
        conversation = self._postable(params)
        text = _param(params, "text") or ""
        if not text and not params.get("blocks") and not params.get("attachments"):
            raise SlackError("no_text")
        if len(text) > MAX_TEXT:
            raise SlackError("msg_too_long")
        thread_ts = _param(params, "thread_ts")
        if thread_ts is not None:
            parent = conversation.messages.get(thread_ts)
            if parent is None:
                raise SlackError("thread_not_found")
            if is_reply(parent):
                thread_ts = parent["thread_ts"]  # replying to a reply lands in its thread
        ts = self.next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "text": text,
            "user": self.bot.user_id,
            "bot_id": self.bot.bot_id,
            "app_id": self.bot.app_id,
            "team": self.team_id,
            "ts": ts,
            "bot_profile": {"id": self.bot.bot_id, "name": self.bot.name, "app_id": self.bot.app_id},
        }
        for key in ("blocks", "attachments"):
            if params.get(key):
                message[key] = params[key]
        if metadata := _metadata(params.get("metadata")):
            message["metadata"] = metadata
        username, icon_url, icon_emoji = (_param(params, k) for k in ("username", "icon_url", "icon_emoji"))
        if username:
            message["username"] = username
        if icon_url or icon_emoji:
            message["icons"] = {"image_48": icon_url} if icon_url else {"emoji": icon_emoji}
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            message["parent_user_id"] = conversation.messages[thread_ts].get("user", "")
            if _flag(params, "reply_broadcast"):
                message["subtype"] = "thread_broadcast"
        conversation.messages[ts] = message
        conversation.changed()
        self.posts.append(
            Post(
                channel=conversation.id,
                ts=ts,
                text=text,
                thread_ts=thread_ts,
                username=username,
                icon_url=icon_url,
                icon_emoji=icon_emoji,
                params=dict(params),
            )
        )
        return {"ok": True, "channel": conversation.id, "ts": ts, "message": message}

    def chat_update(self, params: Params) -> dict[str, Any]:
        conversation = self.resolve(_required(params, "channel", "channel_not_found"))
        message = self._own(conversation, params, "cant_update_message")
        text = _param(params, "text")
        if text is None and not params.get("blocks"):
            raise SlackError("no_text")
        if text is not None:
            if len(text) > MAX_TEXT:
                raise SlackError("msg_too_long")
            message["text"] = text
        if params.get("blocks"):
            message["blocks"] = params["blocks"]
        message["edited"] = {"user": self.bot.user_id, "ts": self.next_ts()}
        return {
            "ok": True,
            "channel": conversation.id,
            "ts": message["ts"],
            "text": message.get("text", ""),
            "message": message,
        }

    def chat_delete(self, params: Params) -> dict[str, Any]:
        conversation = self.resolve(_required(params, "channel", "channel_not_found"))
        message = self._own(conversation, params, "cant_delete_message")
        ts = message["ts"]
        if not is_reply(message) and conversation.replies(ts):
            conversation.messages[ts] = tombstone(ts)  # the thread stays, under a tombstone
        else:
            del conversation.messages[ts]
        conversation.changed()
        return {"ok": True, "channel": conversation.id, "ts": ts}


# -- module helpers ------------------------------------------------------------------------


def _metadata(value: Any) -> dict[str, Any] | None:
    """``chat.postMessage``'s ``metadata`` (an object, or JSON text in a form post)."""
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError("invalid_metadata_format") from None
    if value is None or value == "":
        return None
    if not isinstance(value, dict) or not isinstance(value.get("event_type"), str):
        raise SlackError("invalid_metadata_format")
    return {"event_type": value["event_type"], "event_payload": dict(value.get("event_payload") or {})}


def _with_metadata(message: dict[str, Any], params: Params) -> dict[str, Any]:
    """Slack returns message metadata only to readers that ask (``include_all_metadata``)."""
    if "metadata" in message and not _flag(params, "include_all_metadata"):
        return {k: v for k, v in message.items() if k != "metadata"}
    return message


def _message_page(
    conversation: Conversation, ordered: list[str], limit: int, params: Params, cursor_kind: str
) -> dict[str, Any]:
    """One page of ``ordered`` message timestamps, with a cursor when more follow."""
    page = ordered[:limit]
    response: dict[str, Any] = {
        "ok": True,
        "messages": [_with_metadata(conversation.served(conversation.messages[ts]), params) for ts in page],
        "has_more": len(ordered) > limit,
    }
    if response["has_more"]:
        response["response_metadata"] = {"next_cursor": _encode_cursor(cursor_kind, page[-1])}
    return response


def _bounds(params: Params, now: float) -> tuple[float, float, bool]:
    return _number(params, "oldest", 0.0), _number(params, "latest", now), _flag(params, "inclusive")


def _within(key: float, oldest: float, latest: float, inclusive: bool) -> bool:
    if inclusive:
        return oldest <= key <= latest
    return oldest < key < latest


def _offset_page(items: list[Any], params: Params, limit: int) -> tuple[list[Any], str]:
    """Cursor paging by position, for lists that do not change during a test."""
    start = 0
    if cursor := _param(params, "cursor"):
        try:
            start = int(_decode_cursor(cursor, "offset"))
        except ValueError:
            raise SlackError("invalid_cursor") from None
    end = start + limit
    return items[start:end], (_encode_cursor("offset", end) if end < len(items) else "")


def _load_messages(raw_messages: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Raw export records by ts: malformed ones left out, a repeated ts kept once (the last,
    as the export source does)."""
    messages: dict[str, dict[str, Any]] = {}
    for raw in raw_messages:
        if not isinstance(raw, dict):
            continue
        ts = _ts_text(raw.get("ts"))
        if ts is None:
            continue
        messages[ts] = raw if raw.get("ts") == ts else {**raw, "ts": ts}
    return messages


def _conversation(
    export: SlackExport, channel: Channel, kind: Kind, skip: Callable[[str, str], None]
) -> Conversation:
    members = channel.raw.get("members")
    conversation = Conversation(
        id=channel.id,
        kind=kind,
        record=dict(channel.raw),
        messages=_load_messages(export.channel_messages(channel, on_skip=skip)),
        members=[m for m in members if isinstance(m, str)] if isinstance(members, list) else [],
    )
    conversation.add_missing_roots()
    return conversation


def _direct_conversations(export: SlackExport, skip: Callable[[str, str], None]) -> list[Conversation]:
    """DMs (``dms.json``) and group DMs (``mpims.json``) — served only to a client that asks for
    ``types=im``/``mpim``, so tests can prove a scraper never does."""
    out: list[Conversation] = []
    folders = set(export.folders())
    for file_name, kind in (("dms.json", "im"), ("mpims.json", "mpim")):
        if not export.has(file_name):
            continue
        records = export.read_json(file_name)
        for raw in records if isinstance(records, list) else []:
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                continue
            name = raw.get("name") if isinstance(raw.get("name"), str) else ""
            folder = next((f for f in (raw["id"], name) if f and f in folders), None)
            channel = Channel(raw["id"], name or raw["id"], True, folder, raw)
            out.append(_conversation(export, channel, kind, skip))  # type: ignore[arg-type]
    return out
