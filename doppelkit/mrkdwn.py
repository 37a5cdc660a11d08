"""Slack mrkdwn → plain chat text, and back: one cleanup shared by training and serving.

Slack stores message text as *mrkdwn*: mentions and links are ``<…>`` control sequences and
``& < >`` are HTML-escaped. A persona model should read (and write) text the way people see it
in the Slack client, so :func:`clean` rewrites it:

==============================  ==================================================
``<@U123>`` / ``<@U123|bob>``   ``@Bob Smith`` (label from ``users``; else the inline
                                name; else ``@U123``)
``<#C123|general>``             ``#general`` (``<#C123>``, ``<#C123|>``: the name from
                                ``channels``, else ``#C123``)
``<!here>`` ``<!channel>``      ``@here`` ``@channel`` ``@everyone``
``<!subteam^S1|@devs>``         ``@devs``
``<!date^…|fallback>``          ``fallback``
``<https://x.io|the docs>``     ``the docs (https://x.io)`` — the label is what people
                                read, the URL is kept because it is often the point
``<https://x.io|x.io>``         ``x.io`` (label already is the URL, minus scheme, a
                                trailing slash or percent-encoding: what was typed)
``<https://x.io>``              ``https://x.io``; ``<mailto:a@b.io>`` → ``a@b.io``
``<mailto:a@b.io|Ann>``         ``Ann (a@b.io)``
``<tel:5001000|500-1000>``      ``500-1000`` (a number Slack auto-linked, as typed)
``&amp; &lt; &gt;``             ``& < >``
==============================  ==================================================

Emoji shortcodes (``:tada:``) and formatting (``*bold*``, ``_italic_``, backticks) stay as typed:
they are part of how a person writes. :func:`escape` is the reverse step for posting model
output: it re-escapes ``& < >`` so generated text can never form a ping or a link.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from urllib.parse import unquote

_EMPTY: Mapping[str, str] = {}

# One pass over the text: a control sequence or an entity. Handling both in one regex means
# text we insert (a display name containing "&lt;") is never unescaped a second time.
_TOKEN = re.compile(r"<([^<>\n]*)>|&(amp|lt|gt);")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_USER_MENTION = re.compile(r"<@([UWB][A-Z0-9]+)(?:\|[^<>]*)?>")
_CHANNEL_MENTION = re.compile(r"<#([^|<>\s]+)(?:\|[^<>]*)?>")
_SCHEMES = ("https://", "http://", "mailto:")


def unescape(text: str) -> str:
    """Undo Slack's three HTML entities (``&amp;`` last-in-first-out safe: one pass)."""
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


def escape(text: str) -> str:
    """Escape ``& < >`` for posting: ``<!channel>`` or ``<@U…>`` in model output stays inert."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mentioned_user_ids(text: str) -> Iterator[str]:
    """The user IDs mentioned in raw mrkdwn ``text`` (``<@U123>``, ``<@W1|name>``)."""
    for match in _USER_MENTION.finditer(text):
        yield match.group(1)


def mentioned_channel_ids(text: str) -> Iterator[str]:
    """The channel IDs mentioned in raw mrkdwn ``text`` (``<#C123>``, ``<#C123|general>``)."""
    for match in _CHANNEL_MENTION.finditer(text):
        yield match.group(1)


def _without_scheme(url: str) -> str:
    for scheme in _SCHEMES:
        if url.startswith(scheme):
            return url[len(scheme) :]
    return url


def _control(inner: str, users: Mapping[str, str], channels: Mapping[str, str]) -> str:
    """Rewrite the inside of one ``<…>`` control sequence."""
    target, _, label = inner.partition("|")
    label = unescape(label)
    if target.startswith("@"):
        user_id = target[1:]
        return "@" + (users.get(user_id) or label.lstrip("@") or user_id)
    if target.startswith("#"):
        channel_id = target[1:]
        return "#" + (label or channels.get(channel_id) or channel_id)
    if target.startswith("!"):
        command = target[1:]
        if command in ("here", "channel", "everyone"):
            return "@" + command
        if command.startswith("subteam^"):
            return label or "@" + command.removeprefix("subteam^")
        return label or "@" + command  # <!date^…|fallback> and future commands
    url = unescape(target)
    if url.startswith("tel:"):  # a number Slack auto-linked: the label is what was typed
        return label or url[4:]
    if not label:
        return _without_scheme(url) if url.startswith("mailto:") else url
    if _same_place(label, url):  # Slack auto-linked what the person typed
        return label
    return f"{label} ({url[7:] if url.startswith('mailto:') else url})"


def _same_place(label: str, url: str) -> bool:
    """True when ``label`` is ``url`` as a person typed it: without the scheme Slack added, a
    trailing slash, or the percent-encoding of non-ASCII characters."""
    if label == url:
        return True
    typed, linked = _without_scheme(label), _without_scheme(url)
    return typed == linked or typed.rstrip("/") == unquote(linked).rstrip("/")


def clean(
    text: str,
    users: Mapping[str, str] = _EMPTY,
    channels: Mapping[str, str] = _EMPTY,
) -> str:
    """Rewrite Slack mrkdwn ``text`` as people read it (see the module docstring).

    ``users`` maps user IDs to the label to show after ``@`` (a display name); ``channels``
    maps channel IDs to names for ``<#C123>`` without an inline name.
    """
    if "<" not in text and "&" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        inner, entity = match.group(1), match.group(2)
        if entity is not None:
            return _ENTITIES[entity]
        return _control(inner, users, channels)

    return _TOKEN.sub(replace, text)
