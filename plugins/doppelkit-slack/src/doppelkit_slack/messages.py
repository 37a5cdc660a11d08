"""One Slack message parser, for every path a message takes into doppelkit.

The export source, the Web API source and the bot all read Slack's raw message records (the
dicts of an export's day files, of ``conversations.history`` and of ``conversations.replies``)
through this module, so a thread the bot answers in Slack becomes exactly the :class:`Thread`
the same thread became in training::

    parse_message(raw, bot_users)        # one raw dict → Message, or why it is dropped
    assemble_threads(raws, team=…, channel=…, report=…, bot_users=…, bot_names=…)  # → [Thread]

What a raw message becomes:

* system events — any subtype not in :data:`CONTENT_SUBTYPES` (``channel_join``, topics,
  pins, …) — are dropped, counted under the subtype's name; ``tombstone`` as ``deleted``;
  ``hidden: true`` as ``hidden``; a record that is not a dict or has no numeric ``ts`` as
  ``malformed``;
* bots — a ``bot_id``, a :data:`BOT_SUBTYPES` subtype, an author in ``bot_users`` or Slackbot
  (``USLACKBOT``, listed as a person in ``users.json``) — are context, never a persona: the
  message is filed under its bot ID (``B…``, or no author) with ``is_bot``; the thread's
  ``user_labels`` name the bot (:func:`bot_name`);
* the text is ``text``; when that is empty, the words of rich-text ``blocks`` as the mrkdwn Slack
  would have stored (:func:`blocks_text`), and for bots the words of their ``attachments``;
* ``reply_broadcast`` (older exports) is stored as ``thread_broadcast``; ``edited`` and the
  number of ``files`` are kept; a message seen twice (a broadcast is in the channel and its
  thread) is kept once.

Speed: the export source runs :func:`assemble_threads` over every message of a workspace, so
Messages are built without pydantic validation (:class:`TrustedBuilder`; a test checks they
equal validated ones) and nothing here is heavier than one call per message.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from doppelkit.models import DatasetReport, Message, Thread, User
from doppelkit.mrkdwn import mentioned_user_ids

__all__ = [
    "BOT_SUBTYPES",
    "CONTENT_SUBTYPES",
    "FILE_COMMENT",
    "FILE_UPLOAD",
    "MALFORMED",
    "SLACKBOT",
    "SUBTYPE_ALIASES",
    "ChannelInfo",
    "ChannelLike",
    "TrustedBuilder",
    "assemble_threads",
    "attachments_text",
    "blocks_text",
    "bot_name",
    "bot_names_from_users",
    "message_text",
    "parse_message",
    "ts_text",
    "user_from_record",
    "without_generated_text",
]

# Subtypes that carry something a person (or bot) said. Every other subtype is a system event
# (joins, leaves, topic/purpose/name changes, pins, reminders, deleted-message tombstones, …)
# and is dropped, counted under its own name in the dataset report.
CONTENT_SUBTYPES = frozenset(
    {
        "thread_broadcast",
        "reply_broadcast",
        "me_message",
        "file_share",
        "file_comment",
        "bot_message",
        "slackbot_response",
    }
)
BOT_SUBTYPES = frozenset({"bot_message", "slackbot_response"})
# Legacy names, stored as today's so formatters see one name: older exports call a reply also
# sent to the channel ``reply_broadcast``.
SUBTYPE_ALIASES = {"reply_broadcast": "thread_broadcast"}
SLACKBOT = "USLACKBOT"  # users.json lists Slackbot with is_bot: false
MALFORMED = "malformed"  # the drop reason of a record that is not a usable message

M = TypeVar("M", bound=BaseModel)
_set_attribute = object.__setattr__


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


_message = TrustedBuilder(
    Message, ("ts", "user", "text", "is_bot", "subtype", "thread_ts", "edited", "files")
)
if not _message.shared:  # parse_message builds Messages inline, setting every field
    raise TypeError("doppelkit.models.Message gained a field: set it in parse_message")
_MESSAGE_FIELDS = _message.fields_set
_new_message = Message.__new__
_isfinite = math.isfinite
_thread = TrustedBuilder(
    Thread, ("team", "channel", "channel_name", "ts", "messages", "private", "kind", "user_labels")
)


# -- people and bots --------------------------------------------------------------------------


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(value: Any) -> Any:
    """``value`` with every unpaired surrogate removed from its strings (paired ones are already
    one character after parsing); what is left is valid Unicode."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("", value)
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {without_lone_surrogates(key): without_lone_surrogates(item) for key, item in value.items()}
    return value


def user_from_record(raw: dict[str, Any]) -> User | None:
    """A :class:`User` from one ``users.json`` / ``users.list`` record (``None`` without an ID)."""
    user_id = raw.get("id")
    if not isinstance(user_id, str) or not user_id:
        return None
    profile = raw.get("profile")
    if not isinstance(profile, dict):
        profile = {}

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
    """Bot ID (``B…``) → name, from the bot users among user records (``profile.bot_id``)."""
    names: dict[str, str] = {}
    for raw in records:
        profile = raw.get("profile")
        if isinstance(profile, dict) and isinstance(profile.get("bot_id"), str):
            user = user_from_record(raw)
            if user is not None:
                names.setdefault(profile["bot_id"], user.label)
    return names


def bot_name(raw: dict[str, Any], known: Mapping[str, str], bot_id: str) -> str | None:
    """The name a bot's message shows: its ``username``, its ``bot_profile`` name, else the
    name of the bot user whose ``profile.bot_id`` it is (``known``); None if nothing names it."""
    profile = raw.get("bot_profile")
    for name in (
        raw.get("username"),
        profile.get("name") if isinstance(profile, dict) else None,
        known.get(bot_id),
    ):
        if isinstance(name, str) and name.strip():
            return name.strip()
    return None


# -- text -------------------------------------------------------------------------------------


def ts_text(value: Any) -> str | None:
    """A message timestamp as the string Slack uses, or None if it is not a number."""
    if isinstance(value, str):
        try:
            return value if math.isfinite(float(value)) else None
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.6f}"
    return None


def attachments_text(raw: dict[str, Any]) -> str:
    """The words of a message's ``attachments``: integrations often post with empty ``text``."""
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


def _styled(text: str, style: Any) -> str:
    """``text`` in the mrkdwn marks of a rich-text ``style``, as Slack writes them: around the
    words, with the spaces around them left outside (``*very* ``, never ``*very *``)."""
    core = text.strip()
    if not core or not isinstance(style, dict):
        return text
    for key, mark in _STYLE_MARKS:
        if style.get(key):
            core = f"{mark}{core}{mark}"
    start = len(text) - len(text.lstrip())
    return text[:start] + core + text[start + len(text.strip()) :]


def _inline_text(elements: Any) -> str:
    """Rich-text inline elements (``text``, ``user``, ``link``, ``emoji``, …) as mrkdwn."""
    out: list[str] = []
    for element in elements if isinstance(elements, list) else ():
        if not isinstance(element, dict):
            continue
        kind = element.get("type")
        if kind == "text":
            out.append(_styled(_escape(str(element.get("text") or "")), element.get("style")))
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
            link = f"<{url}|{_escape(label)}>" if isinstance(label, str) and label else f"<{url}>"
            out.append(_styled(link, element.get("style")))
        elif kind == "emoji" and element.get("name"):
            tone = element.get("skin_tone")
            out.append(f":{element['name']}:" + (f":skin-tone-{tone}:" if tone else ""))
        elif kind == "date":
            out.append(_escape(str(element.get("fallback") or "")))
        elif kind == "color" and element.get("value"):
            out.append(_escape(str(element["value"])))
        else:  # a kind added since (a canvas, a team, …): its words, if it carries any
            words = element.get("text") or element.get("fallback") or element.get("name")
            if isinstance(words, str) and words:
                out.append(_styled(_escape(words), element.get("style")))
    return "".join(out)


# List markers by nesting level, as the Slack client shows them: 1. a. i. and • ◦ ▪.
_BULLETS = ("•", "◦", "▪")


def _list_marker(ordered: bool, indent: int, number: int) -> str:
    if not ordered:
        return _BULLETS[indent % 3]
    level = indent % 3
    if level == 0:
        return f"{number}."
    if level == 1:
        return f"{_alphabetic(number)}."
    return f"{_roman(number)}."


def _alphabetic(number: int) -> str:
    """1 → a, 26 → z, 27 → aa (spreadsheet columns, lower case)."""
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters or "a"


def _roman(number: int) -> str:
    numerals = (
        (1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
        (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"),
    )  # fmt: skip
    out = ""
    for value, numeral in numerals:
        while number >= value:
            out, number = out + numeral, number - value
    return out or "i"


def _rich_text(elements: Any) -> list[str]:
    """The parts of a ``rich_text`` block: sections, code blocks, quotes and lists (numbered
    from their ``offset``, nested by ``indent``)."""
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
            indent = _count(element.get("indent"))
            offset = _count(element.get("offset"))
            ordered = element.get("style") == "ordered"
            items = [_inline_text(item.get("elements")) for item in inner or () if isinstance(item, dict)]
            parts.append(
                "\n".join(
                    f"{'    ' * indent}{_list_marker(ordered, indent, offset + n)} {item}"
                    for n, item in enumerate(items, 1)
                )
            )
    return parts


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def blocks_text(raw: dict[str, Any]) -> str:
    """The words of a message whose ``text`` is empty but whose ``blocks`` hold them (rich text
    from newer clients, Workflow Builder), as the mrkdwn Slack would have put in ``text``."""
    parts: list[str] = []
    for block in raw.get("blocks") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "rich_text":
            parts.extend(_rich_text(block.get("elements")))
        elif kind in ("section", "header"):
            if isinstance(block.get("text"), dict):
                parts.append(str(block["text"].get("text") or ""))
            for text_field in block.get("fields") or ():
                if isinstance(text_field, dict) and isinstance(text_field.get("text"), str):
                    parts.append(text_field["text"])
        elif kind == "context":
            for element in block.get("elements") or ():
                if isinstance(element, dict) and isinstance(element.get("text"), str):
                    parts.append(element["text"])
    return "\n".join(part.strip("\n") for part in parts if part.strip())


def message_text(raw: dict[str, Any]) -> str:
    """Every word :func:`parse_message` may give a raw message: ``text``, else its rich-text
    blocks, else its attachments (used for bots only, but included for anyone here, so a
    redactor that scrubs this scrubs whatever the parser can produce), without the lines Slack
    wrote itself (:func:`without_generated_text`)."""
    text = raw.get("text")
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if not text and "blocks" in raw:
        text = blocks_text(raw)
    if text:
        user = raw.get("user")
        text = without_generated_text(raw, text, user if isinstance(user, str) else None)[0]
    return text or attachments_text(raw)


# The line Slack writes for a file a person uploaded, shared or mentioned, in the message's own
# text (exports up to about 2019, and the same words rebuilt from rich-text blocks): the author's
# mention, a verb, the file(s) (links, or a bare title), and what the person typed with it
# after "and commented:". Only the comment is theirs.
_FILE_LINE = re.compile(
    r"<@(?P<user>[^|<>\s]+)(?:\|[^<>]*)?> (?:uploaded|shared|mentioned) "
    r"(?:a file|\d+ files|<@[^|<>\s]+(?:\|[^<>]*)?>['’]s file):? "
    r"(?:<[^<>]*>(?:, <[^<>]*>)*|[^<>\n]*?)"
    r"(?: and commented: (?P<comment>.*))?\Z",
    re.DOTALL,
)
# A comment on a file (exports before 2018): Slack's line, then the comment after ": ".
_COMMENT_LINE = re.compile(
    r"<@[^|<>\s]+(?:\|[^<>]*)?> commented on (?:<@[^|<>\s]+(?:\|[^<>]*)?>['’]s|your|their) file "
    r"(?:<[^<>]*>|[^<>\n:]*): (?P<comment>.*)\Z",
    re.DOTALL,
)
# The kinds of generated text counted in DatasetReport.generated_text.
FILE_UPLOAD = "file_upload"
FILE_COMMENT = "file_comment"


def _file_comment(raw: dict[str, Any]) -> tuple[str | None, str | None]:
    """The author and the words of a ``file_comment`` message's ``comment`` (each None if absent)."""
    comment = raw.get("comment")
    if not isinstance(comment, dict):
        return None, None
    user, words = comment.get("user"), comment.get("comment")
    return (user if isinstance(user, str) and user else None), (words if isinstance(words, str) else None)


def without_generated_text(raw: dict[str, Any], text: str, author: str | None) -> tuple[str, str | None]:
    """``text`` without what Slack generated in it, and the kind removed (or None): an upload
    line (``<@U1|ann> uploaded a file: <…|plan.pdf> and commented: see p. 2`` → ``see p. 2``),
    or the line of a ``file_comment`` (its words are the ``comment``'s).

    Removed only when the line names the message's own author or the record is an upload
    (``file_share``, ``upload: true``, ``files``/``file``): a person typing such words about
    someone else keeps them.
    """
    if raw.get("subtype") == "file_comment":
        words = _file_comment(raw)[1]
        if words is None:
            match = _COMMENT_LINE.match(text)
            words = match["comment"] if match else text
        return words.strip(), FILE_COMMENT
    if text[:2] != "<@" or "file" not in text:  # cheap: nearly every message stops here
        return text, None
    match = _FILE_LINE.match(text)
    if match is None:
        return text, None
    if match["user"] != author and not (
        raw.get("subtype") == "file_share" or raw.get("upload") or raw.get("files") or raw.get("file")
    ):
        return text, None
    return (match["comment"] or "").strip(), FILE_UPLOAD


# -- one message ------------------------------------------------------------------------------


def parse_message(raw: Any, bot_users: Collection[str] = frozenset()) -> Message | str:
    """One raw Slack message record → a :class:`Message`, or the reason it is dropped.

    ``bot_users`` are user IDs that are bots (``is_bot`` in ``users.json`` / ``users.list``);
    Slackbot always is. A drop reason is what the dataset report counts it as: the subtype's
    name for system events (``channel_join``, …), ``deleted`` for a tombstone, ``hidden``, or
    :data:`MALFORMED` (not a dict, no numeric ``ts``, a subtype that is not a string). The
    Message is built unvalidated (:class:`TrustedBuilder`): every value is checked here.
    """
    parsed = _parse(raw, bot_users)
    return parsed if isinstance(parsed, str) else parsed[2]


def _parse(
    raw: Any, bot_users: Collection[str], generated: Counter[str] | None = None
) -> tuple[float, str, Message] | str:
    """:func:`parse_message`, returning ``(numeric ts, thread root ts, message)`` for a message
    (what :func:`assemble_threads` sorts by), so nothing is parsed twice in the hot loop.
    Generated text left out is counted by kind in ``generated``."""
    if raw.__class__ is not dict:
        return MALFORMED
    subtype = raw.get("subtype")
    if subtype is not None:
        if subtype.__class__ is not str:
            return MALFORMED
        if subtype not in CONTENT_SUBTYPES:
            return "deleted" if subtype == "tombstone" else subtype
    ts = raw.get("ts")
    if ts.__class__ is not str:
        ts = ts_text(ts)
        if ts is None:
            return MALFORMED
    try:
        ts_key = float(ts)
    except ValueError:
        return MALFORMED
    if not _isfinite(ts_key):
        return MALFORMED
    if raw.get("hidden"):
        return "hidden"
    bot_id = raw.get("bot_id")
    user = raw.get("user")
    if subtype == "file_comment":  # exports before 2018: the comment's author wrote it
        user = _file_comment(raw)[0] or user
    is_bot = (
        bool(bot_id)
        or subtype in BOT_SUBTYPES
        or (user.__class__ is str and (user == SLACKBOT or user in bot_users))
    )
    if is_bot:
        # Bots are context, never a persona: they are filed under their bot ID, if any.
        user = bot_id if bot_id.__class__ is str and bot_id else None
    elif user.__class__ is not str or not user:
        user = None
    text = raw.get("text")
    if text.__class__ is not str:
        text = "" if text is None else str(text)
    if not text and "blocks" in raw:
        text = blocks_text(raw)
    if text[:2] == "<@" or subtype == "file_comment":  # maybe a line Slack wrote (without_generated_text)
        text, kind = without_generated_text(raw, text, user)
        if kind is not None and generated is not None:
            generated[kind] += 1
    if not text and is_bot:
        text = attachments_text(raw)
    thread_ts = raw.get("thread_ts")
    if thread_ts is not None and thread_ts.__class__ is not str:
        thread_ts = ts_text(thread_ts)
    files = raw.get("files")
    # Exports before 2018 hold an upload's file as "file".
    files = len(files) if files.__class__ is list else 1 if raw.get("file").__class__ is dict else 0
    message = _new_message(Message)  # see TrustedBuilder: the same steps, inlined
    _set_attribute(
        message,
        "__dict__",
        {
            "ts": ts,
            "user": user,
            "text": text,
            "is_bot": is_bot,
            "subtype": subtype if subtype is None else SUBTYPE_ALIASES.get(subtype, subtype),
            "thread_ts": thread_ts,
            "edited": "edited" in raw,
            "files": files,
        },
    )
    _set_attribute(message, "__pydantic_fields_set__", _MESSAGE_FIELDS)
    _set_attribute(message, "__pydantic_extra__", None)
    _set_attribute(message, "__pydantic_private__", None)
    return ts_key, thread_ts or ts, message


# -- threads ----------------------------------------------------------------------------------


class ChannelLike(Protocol):
    """What :func:`assemble_threads` needs to know of a conversation (an export's
    :class:`~doppelkit_slack.sources.reader.Channel`, a scrape's channel, :class:`ChannelInfo`)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def private(self) -> bool: ...


@dataclass(frozen=True)
class ChannelInfo:
    """A conversation known only by its ID (and maybe name), e.g. one the bot was mentioned in."""

    id: str
    name: str = ""
    private: bool = False


def assemble_threads(
    raw_messages: Iterable[Any],
    *,
    team: str,
    channel: ChannelLike,
    report: DatasetReport,
    bot_users: Collection[str] = (),
    bot_names: Mapping[str, str] | None = None,
    known_users: Collection[str] | None = None,
) -> list[Thread]:
    """Turn one conversation's raw messages (from all its day files or pages, any order) into
    threads, each message through :func:`parse_message`.

    A thread is a root and every message whose ``thread_ts`` names it, ordered by numeric
    ``ts``; a top-level message without replies is a one-message thread; replies whose root is
    missing still form a thread (its ``ts`` is their ``thread_ts``). A message seen twice (the
    same ``ts``, e.g. a ``thread_broadcast`` exported in the channel and the thread) is kept
    once, in its thread; a dropped record seen twice is counted once. Threads are returned sorted
    by root ``ts``.

    ``bot_users`` are user IDs that are bots; ``bot_names`` maps bot IDs (``B…``) to names (see
    :func:`bot_names_from_users`), used with the messages' own ``username``/``bot_profile`` for
    the threads' ``user_labels``. Dropped records are counted in ``report``.

    ``known_users`` are the IDs the workspace names (``users.json`` / ``users.list``). People
    missing from it (members of a shared channel from another workspace, some deleted members)
    are named in ``user_labels`` by the ``user_profile`` Slack recorded with their messages: in
    a thread they wrote in, by their latest message there; elsewhere in the conversation (a
    mention), by their latest message in it. ``None``: no such names.
    """
    known_bots = bot_names or {}
    if not isinstance(bot_users, (set, frozenset)):
        bot_users = frozenset(bot_users)
    drops: Counter[str] = Counter()
    # ts → (numeric ts, thread root ts, message). Raw records become small Messages as they
    # stream in, so a conversation's parsed JSON is never held all at once. This loop runs once
    # per message of the workspace: one call, no validation.
    by_ts: dict[str, tuple[float, str, Message]] = {}
    labels: dict[str, dict[str, str]] = {}
    parse = _parse
    dropped: set[Any] = set()  # the ts of records dropped so far
    # Names recorded with messages of people known_users lacks: ID → [(ts, root, name)].
    profiles: dict[str, list[tuple[float, str, str]]] = {}
    if known_users is not None and not isinstance(known_users, (set, frozenset)):
        known_users = frozenset(known_users)
    generated: Counter[str] = Counter()
    for raw in raw_messages:
        parsed = parse(raw, bot_users, generated)
        if isinstance(parsed, str):
            # A record seen twice (a deleted thread root is in the channel's history and at the
            # head of its thread) is counted once, as a message seen twice is kept once.
            ts = raw.get("ts") if raw.__class__ is dict else None
            if ts.__class__ is str or ts.__class__ is float or ts.__class__ is int:
                if ts in dropped:
                    continue
                dropped.add(ts)
            drops[parsed] += 1
            continue
        fields = parsed[2].__dict__
        by_ts[fields["ts"]] = parsed  # the same ts twice (a re-exported broadcast): kept once
        author = fields["user"]
        if fields["is_bot"]:
            if author:
                name = bot_name(raw, known_bots, author)
                if name:
                    labels.setdefault(parsed[1], {})[author] = name
        elif known_users is not None and author and author not in known_users:
            name = _profile_name(raw)
            if name:
                profiles.setdefault(author, []).append((parsed[0], parsed[1], name))

    # One sort by numeric ts (stable: equal timestamps keep arrival order) orders every thread.
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

    if profiles:
        _label_unknown_people(groups, profiles, labels)

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
    for kind, n in generated.items():
        report.left_out_generated(kind, n)
    return threads


def _profile_name(raw: dict[str, Any]) -> str | None:
    """The name Slack recorded with a message (its ``user_profile``), as a label: display
    name, else real name, else handle."""
    profile = raw.get("user_profile")
    if not isinstance(profile, dict):
        return None
    for key in ("display_name", "real_name", "name"):
        value = profile.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _label_unknown_people(
    groups: Mapping[str, list[Message]],
    profiles: Mapping[str, list[tuple[float, str, str]]],
    labels: dict[str, dict[str, str]],
) -> None:
    """Name the people ``profiles`` knows in the threads that involve them (see assemble_threads)."""
    latest = {uid: max(seen)[2] for uid, seen in profiles.items()}
    in_thread: dict[tuple[str, str], str] = {}
    for uid, seen in profiles.items():
        for _, root, name in sorted(seen):
            in_thread[(root, uid)] = name  # the latest in each thread wins
    for root, messages in groups.items():
        referenced = {m.user for m in messages if m.user}
        for message in messages:
            if "<@" in message.text:
                referenced.update(mentioned_user_ids(message.text))
        for uid in referenced & latest.keys():
            labels.setdefault(root, {}).setdefault(uid, in_thread.get((root, uid), latest[uid]))


def _ts_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
