"""Posting a generated reply: neutralised, split to Slack's size, in order, as the persona."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from doppelkit.models import SAFE_ID, Persona
from doppelkit.mrkdwn import escape

log = logging.getLogger("doppelkit.bolt")

# A word joiner after "@" keeps Slack from ever turning plain "@here" into a ping, even with
# ``link_names`` on; it is invisible in the client.
_BROADCAST = re.compile(r"(?<![\w.@])@(here|channel|everyone)\b", re.IGNORECASE)
WORD_JOINER = "\u2060"
# Message metadata on every persona reply (never on notices), so a later mention in the same
# thread can tell who spoke: this persona, another one (after /doppel switch), or the system.
REPLY_EVENT_TYPE = "doppelkit_reply"


def neutralise(text: str) -> str:
    """Model output as inert text: no ``<!channel>``/``<!here>``/``<@U…>`` pings, no links.

    Escaping ``& < >`` makes every ``<…>`` control sequence plain text; plain ``@here`` and
    friends are broken with an invisible word joiner.
    """
    return _BROADCAST.sub(lambda m: "@" + WORD_JOINER + m.group(1), escape(text))


def split_message(text: str, limit: int) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters, at the gentlest boundary
    available (paragraph, line, space), hard-cutting only a single over-long word."""
    text = text.strip()
    chunks: list[str] = []
    while len(text) > limit:
        window = text[: limit + 1]
        cut = -1
        for boundary in ("\n\n", "\n", " "):
            cut = window.rfind(boundary)
            if cut > limit // 4:
                break
        if cut <= 0:
            cut = limit
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        chunks.append(text)
    return chunks


def outgoing_messages(parts: list[str], limit: int) -> list[str]:
    """Every Slack message to post for an engine reply, in order, already neutralised.

    Escaping can lengthen text (``&`` → ``&amp;``), so chunks are cut with a margin.
    """
    out: list[str] = []
    for part in parts:
        for chunk in split_message(part, max(limit - 200, limit // 2)):
            safe = neutralise(chunk)
            out.extend(split_message(safe, limit) if len(safe) > limit else [safe])
    return out


def bot_username(persona: Persona) -> str:
    """The name a persona's replies carry: "<name>-bot", so nobody takes it for the person."""
    return f"{persona.label}-bot"


def reply_metadata(persona_id: str) -> dict[str, Any]:
    return {"event_type": REPLY_EVENT_TYPE, "event_payload": {"persona": persona_id}}


def replying_persona(message: dict[str, Any]) -> str | None:
    """The persona (user ID) a posted reply was written as, from its metadata; None for a
    notice or a message without our metadata."""
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != REPLY_EVENT_TYPE:
        return None
    payload = metadata.get("event_payload")
    persona = payload.get("persona") if isinstance(payload, dict) else None
    return persona if isinstance(persona, str) and SAFE_ID.fullmatch(persona) else None


@dataclass(frozen=True)
class Identity:
    """Who the bot posts as (``chat:write.customize``)."""

    username: str
    icon_url: str | None = None
    icon_emoji: str | None = None


def post_messages(
    client: WebClient,
    channel: str,
    thread_ts: str | None,
    messages: list[str],
    identity: Identity,
    metadata: dict[str, Any] | None = None,
) -> int:
    """Post ``messages`` in order in the thread; stop at the first that fails for good.

    The client retries 429/5xx itself; when it gives up we log and stop, never raise: a reply
    that cannot be delivered must not crash a worker or trigger a duplicate later.
    """
    posted = 0
    for text in messages:
        try:
            client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts or None,
                text=text,
                username=identity.username,
                icon_url=identity.icon_url,
                icon_emoji=None if identity.icon_url else identity.icon_emoji,
                link_names=False,
                unfurl_links=False,
                unfurl_media=False,
                metadata=metadata,
            )
        except (SlackApiError, SlackRequestError, OSError) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            log.error(
                "giving up posting to %s (thread %s) after retries: %s (HTTP %s); %d of %d posted",
                channel,
                thread_ts,
                type(exc).__name__,
                status,
                posted,
                len(messages),
            )
            return posted
        posted += 1
    return posted
