"""Thread → chat turns: the logic both built-in formatters share, for training and serving.

A thread is cleaned into *lines* (one per conversational message, mrkdwn rewritten), then cut
into maximal *runs* of the persona's lines and of everyone else's. A persona run whose text
reaches ``min_length`` is a *reply*: it becomes an example's assistant turn and, later in the
thread, an assistant turn of the context. Everything else is transcript: ``Name: text`` lines in
user turns (a persona run too short to be a reply shows up there as ``Persona: ok``, so the
model only ever sees itself saying things it was trained to say).

The context of a reply is the most recent lines before it, within ``max_context_chars`` and
``max_context_messages``. Lines are cleaned once per thread and each window walks back at most
the budget, so formatting is linear in the thread's length.

Serving runs the very same code on a live thread (:meth:`ThreadTurns.prompt_messages`), which
is why the prompt a persona sees in Slack is byte-for-byte the prefix it was trained on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import NamedTuple

from doppelkit.builtins.formatters.options import ThreadOptions, fill_system_prompt
from doppelkit.models import ChatMessage, DatasetReport, Example, Message, Persona, Role, Thread
from doppelkit.mrkdwn import clean

# A persona reply of several Slack messages is one assistant turn with the messages joined by
# this separator; the engine posts each part separately (:func:`split_reply`). A Markdown rule
# on its own line: rare inside one Slack message, and easy for a model to learn and emit.
REPLY_SEPARATOR = "\n\n---\n\n"
# A separator line anywhere, also at the very start or end of a generated reply.
_SEPARATOR_PATTERN = re.compile(r"(?:^|\n)[ \t]*---[ \t]*(?:\n|$)")

# Message subtypes that carry something a person wrote. Everything else (joins, leaves, topic
# and purpose changes, pins, channel renames, …) is an event, never text to learn or show.
CONVERSATIONAL_SUBTYPES = frozenset({None, "thread_broadcast", "me_message", "file_share", "file_comment"})

ELLIPSIS = "…"


def split_reply(text: str) -> list[str]:
    """The Slack messages in one generated reply (the inverse of joining with the separator).

    Lenient about the whitespace around ``---`` (models drift); empty parts are dropped.
    """
    return [part.strip() for part in _SEPARATOR_PATTERN.split(text) if part.strip()]


def join_reply(parts: list[str]) -> str:
    return REPLY_SEPARATOR.join(parts)


class Line(NamedTuple):
    """One conversational message, cleaned."""

    ts: str
    speaker: str  # the label speaker tags show
    text: str
    is_persona: bool


class Unit(NamedTuple):
    """A line as the context shows it: in a user turn with a speaker tag, or as (part of) an
    assistant turn."""

    role: Role
    speaker: str
    text: str

    @property
    def rendered(self) -> str:
        return self.text if self.role == "assistant" else f"{self.speaker}: {self.text}"


class Reply(NamedTuple):
    """A qualifying persona run: lines ``[start, end)``."""

    start: int
    end: int


def thread_channels(thread: Thread) -> dict[str, str]:
    """Channel ID → name for the thread's ``<#C…>`` mentions: its own channel and those named
    in ``channel_labels``."""
    channels = dict(thread.channel_labels)
    if thread.channel_name:
        channels[thread.channel] = thread.channel_name
    return channels


def is_persona_message(message: Message, persona: Persona) -> bool:
    """Only a human message by the persona's user ID is theirs: never a bot's."""
    return not message.is_bot and message.user is not None and message.user == persona.id


def read_lines(
    thread: Thread,
    persona: Persona,
    options: ThreadOptions,
    report: DatasetReport,
    bot_user_id: str | None = None,
) -> list[Line]:
    """The thread's conversational messages, cleaned; drops are counted in ``report``.

    Mentions of the persona (``<@persona_id>``) and of the serving bot (``<@bot_user_id>``)
    both read ``@<persona label>``, so a question to the bot in Slack looks like a question to
    the person in training.
    """
    persona_id, persona_label = persona.id, persona.label
    labels = dict(thread.user_labels)
    labels[persona_id] = persona_label
    if bot_user_id:
        labels[bot_user_id] = persona_label
    channels = thread_channels(thread)
    include_bots = options.include_bots
    lines: list[Line] = []
    events = bots = empty = mine_count = my_events = my_empty = 0
    # Runs once per message of a workspace at ingest: plain locals, counts added at the end.
    for message in thread.messages:
        is_bot = message.is_bot
        user = message.user
        if is_bot:
            if not include_bots:
                bots += 1
                continue
        elif message.subtype not in CONVERSATIONAL_SUBTYPES:
            events += 1
            my_events += user == persona_id
            continue
        text = clean(message.text, labels, channels).strip()
        mine = not is_bot and user is not None and user == persona_id
        if not text:
            empty += 1
            my_empty += mine
            continue
        if mine:
            mine_count += 1
        speaker = labels.get(user, user) if user else "bot"
        lines.append(Line(message.ts, speaker, text, mine))
    if events:
        report.drop("system_event", events)
        if my_events:
            report.persona_drop("system_event", my_events)
    if bots:
        report.drop("bot", bots)
    if empty:
        report.drop("empty", empty)
        if my_empty:
            report.persona_drop("empty", my_empty)
    if mine_count:
        report.candidate_persona_messages += mine_count
    return lines


class ThreadTurns:
    """One thread's lines, runs and context units; built once, in linear time."""

    def __init__(self, lines: list[Line], options: ThreadOptions, *, flat: bool = False) -> None:
        """``flat``: every context line is a tagged transcript line in one user turn (the
        alpaca layout); otherwise persona replies are assistant turns (the chat layout)."""
        self.lines = lines
        self.options = options
        self.replies: list[Reply] = []
        self.too_short = 0  # persona messages in runs below min_length
        roles: list[Role] = ["user"] * len(lines)
        start = 0
        while start < len(lines):
            end = start
            while end < len(lines) and lines[end].is_persona == lines[start].is_persona:
                end += 1
            if lines[start].is_persona:
                if sum(len(line.text) for line in lines[start:end]) >= options.min_length:
                    self.replies.append(Reply(start, end))
                    if not flat:
                        roles[start:end] = ["assistant"] * (end - start)
                else:
                    self.too_short += end - start
            start = end
        self.units = [Unit(role, line.speaker, line.text) for role, line in zip(roles, lines, strict=True)]
        # What each unit costs in the context budget: its rendered length plus the line break.
        self.costs = [
            len(text) + 1 if role == "assistant" else len(speaker) + len(text) + 3
            for role, speaker, text in self.units
        ]

    def context(self, end: int) -> list[Unit]:
        """The most recent units before line ``end`` within the context budget.

        A single message longer than the whole budget keeps its tail (``…`` marks the cut). A
        window cut short never starts with an assistant turn: chat templates expect a user turn
        first, and half an exchange is poor context.
        """
        max_chars, max_messages = self.options.max_context_chars, self.options.max_context_messages
        if end == 0 or max_chars == 0 or max_messages == 0:
            return []
        costs = self.costs
        start, used = end, 0
        while start > 0 and end - start < max_messages:
            cost = costs[start - 1]  # the rendered line and the line break joining lines
            if used + cost > max_chars:
                break
            used += cost
            start -= 1
        if start == end:  # the latest message alone is over budget: keep its tail
            last = self.units[end - 1]
            room = max(max_chars - (len(last.rendered) - len(last.text)) - len(ELLIPSIS), 1)
            return [Unit(last.role, last.speaker, ELLIPSIS + last.text[-room:])]
        if start > 0:
            while start < end and self.units[start].role == "assistant":
                start += 1
        return self.units[start:end]

    def prompt_messages(self, system: str, units: list[Unit]) -> list[ChatMessage]:
        """System prompt + context ``units`` as alternating chat turns, starting with a user."""
        messages = [_chat(role="system", content=system)]
        if not units or units[0].role == "assistant":
            messages.append(_chat(role="user", content=self.options.empty_context_text))
        group: list[Unit] = []
        for unit in units:
            if group and unit.role != group[0].role:
                messages.append(_turn(group))
                group = []
            group.append(unit)
        if group:
            messages.append(_turn(group))
        return messages


# Turns and examples are built from values that are already the right types: constructing
# them without validation (the same objects, a test checks) keeps formatting linear and cheap.
_chat = functools.partial(ChatMessage.model_construct)


def _turn(units: list[Unit]) -> ChatMessage:
    role = units[0].role
    if role == "assistant":
        return _chat(role=role, content=join_reply([u.text for u in units]))
    return _chat(role=role, content="\n".join(u.rendered for u in units))


def system_prompt(options: ThreadOptions, thread: Thread, persona: Persona) -> str:
    channel = thread.channel_name or thread.channel
    return fill_system_prompt(
        options.system_prompt, user=persona.label, channel=channel, platform=thread.platform
    )


def thread_examples(
    thread: Thread,
    persona: Persona,
    options: ThreadOptions,
    report: DatasetReport,
    *,
    formatter: str,
    flat: bool = False,
) -> Iterator[Example]:
    """One example per qualifying persona run of ``thread``."""
    turns = ThreadTurns(read_lines(thread, persona, options, report), options, flat=flat)
    if turns.too_short:
        report.drop("too_short", turns.too_short)
        report.persona_drop("too_short", turns.too_short)
    system = system_prompt(options, thread, persona)
    for reply in turns.replies:
        context = turns.context(reply.start)
        messages = turns.prompt_messages(system, context)
        response = join_reply([line.text for line in turns.lines[reply.start : reply.end]])
        messages.append(_chat(role="assistant", content=response))
        yield Example.model_construct(
            messages=messages,
            meta={
                "team": thread.team,
                "channel": thread.channel,
                "channel_name": thread.channel_name,
                "thread_ts": thread.ts,
                "thread_kind": thread.kind,
                "message_ts": [line.ts for line in turns.lines[reply.start : reply.end]],
                "persona_id": persona.id,
                "persona_label": persona.label,
                "formatter": formatter,
                "context_messages": len(context),
            },
        )


def thread_prompt(
    thread: Thread,
    persona: Persona,
    options: ThreadOptions,
    *,
    flat: bool = False,
    bot_user_id: str | None = None,
) -> list[ChatMessage]:
    """Serving: the chat messages asking the persona to continue ``thread``."""
    lines = read_lines(thread, persona, options, DatasetReport(), bot_user_id)
    turns = ThreadTurns(lines, options, flat=flat)
    return turns.prompt_messages(system_prompt(options, thread, persona), turns.context(len(lines)))
