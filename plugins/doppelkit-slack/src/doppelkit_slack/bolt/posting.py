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
NOTICE_EVENT_TYPE = "doppelkit_notice"
# A raw control sequence Slack would turn into a ping or a link: <@U…>, <!here>, <#C…>, <!subteam^…>.
_RAW_MENTION = re.compile(r"<(?=[@!#])")


def neutralise(text: str) -> str:
    """Model output as inert text: no ``<!channel>``/``<!here>``/``<@U…>`` pings, no links.

    Escaping ``& < >`` makes every ``<…>`` control sequence plain text; plain ``@here`` and
    friends are broken with an invisible word joiner.
    """
    return _BROADCAST.sub(lambda m: "@" + WORD_JOINER + m.group(1), escape(text))


def without_pings(text: str) -> str:
    """The one rule for every message the bot writes (replies, notices, progress, command
    answers): no raw user, channel or special mention survives, and plain ``@here`` cannot
    ping. Idempotent, and a no-op on :func:`neutralise`'s output."""
    return _BROADCAST.sub(lambda m: "@" + WORD_JOINER + m.group(1), _RAW_MENTION.sub("&lt;", text))


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


def reply_metadata(persona_id: str | None, job: str | None = None, part: int | None = None) -> dict[str, Any]:
    """Metadata of a post: a persona's reply (``persona``) or a notice (None); ``job`` and
    ``part`` say which part of which reply job it is (a resumed job skips posted parts)."""
    payload: dict[str, Any] = {} if persona_id is None else {"persona": persona_id}
    if job is not None:
        payload.update(job=job, part=part)
    return {
        "event_type": NOTICE_EVENT_TYPE if persona_id is None else REPLY_EVENT_TYPE,
        "event_payload": payload,
    }


def posted_part(message: dict[str, Any], job: str) -> int | None:
    """The part index of ``job`` this posted message is, from its metadata; None otherwise."""
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") not in (
        REPLY_EVENT_TYPE,
        NOTICE_EVENT_TYPE,
    ):
        return None
    payload = metadata.get("event_payload")
    if not isinstance(payload, dict) or payload.get("job") != job:
        return None
    part = payload.get("part")
    return part if isinstance(part, int) and part >= 0 else None


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


class PostFailed(Exception):
    """A post Slack refused or that failed after the client's retries."""

    def __init__(self, code: str, status: int | None) -> None:
        super().__init__(f"{code} (HTTP {status})")
        self.code, self.status = code, status


# Errors after which a short notice in the same place cannot work either.
UNREACHABLE = frozenset(
    {"channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "token_revoked",
     "account_inactive", "not_authed", "thread_not_found", "restricted_action", "ratelimited"}
)  # fmt: skip


def post_message(
    client: WebClient,
    channel: str,
    thread_ts: str | None,
    text: str,
    identity: Identity,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Post one message (through :func:`without_pings`); its ts. Raises :class:`PostFailed`
    with Slack's error code (``ratelimited``, ``http_503``, ``connection``…) once the client's
    own retries are spent."""
    try:
        response = client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts or None,
            text=without_pings(text),
            username=identity.username,
            icon_url=identity.icon_url,
            icon_emoji=None if identity.icon_url else identity.icon_emoji,
            link_names=False,
            unfurl_links=False,
            unfurl_media=False,
            metadata=metadata,
        )
    except SlackApiError as exc:
        status = getattr(exc.response, "status_code", None)
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        raise PostFailed(str(error or f"http_{status}"), status) from None
    except (SlackRequestError, OSError) as exc:
        raise PostFailed(f"connection: {type(exc).__name__}", None) from None
    return str(response.get("ts") or "")


def post_messages(
    client: WebClient,
    channel: str,
    thread_ts: str | None,
    messages: list[str],
    identity: Identity,
    metadata: dict[str, Any] | None = None,
) -> int:
    """Post ``messages`` in order in the thread; stop at the first that fails for good (logged
    with Slack's error code, never raised); how many were posted."""
    for posted, text in enumerate(messages):
        try:
            post_message(client, channel, thread_ts, text, identity, metadata)
        except PostFailed as failed:
            log.error(
                "giving up posting to %s (thread %s): %s; %d of %d posted",
                channel, thread_ts, failed, posted, len(messages),
            )  # fmt: skip
            return posted
    return len(messages)
