"""Domain models shared by every plugin kind.

These are the nouns that flow along the data path::

    Source ──Thread──▶ Formatter ──Example──▶ Trainer ──AdapterManifest──▶ home/adapters

They are plain pydantic models so plugins can serialise them (JSONL datasets, manifests,
reports) without knowing each other.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

ModelT = TypeVar("ModelT", bound=BaseModel)

# Slack IDs (T…, U…/W…, C…/G…) and the IDs other sources invent are used as directory names
# under ``home``; this pattern keeps them to one safe path component.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def is_safe_id(value: object) -> bool:
    """True if ``value`` is a string safe as a single path component (see :data:`SAFE_ID`)."""
    return isinstance(value, str) and bool(SAFE_ID.fullmatch(value)) and value not in {".", ".."}


def validate_safe_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is safe as a single path component, else raise ``ValueError``."""
    if not is_safe_id(value):
        raise ValueError(
            f"{what} {value!r} is not a valid ID (letters, digits, '_', '.', '-'; at most 64 "
            "characters; must start with a letter or digit)"
        )
    return value


def _id_text(value: object) -> object:
    """IDs are strings, but a config parser reads an all-digit ID (Discord's, many others') as a
    number: take the number's digits back."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


ID = Annotated[str, BeforeValidator(_id_text)]
"""A string ID that also accepts an all-digit ID parsed as a number (``persona.user=3011…``).
Use it for every ID field of a component ``Config``."""

SafeID = Annotated[str, BeforeValidator(_id_text), AfterValidator(lambda v: validate_safe_id(v, "ID"))]
"""An :data:`ID` that is safe as a directory name under ``home`` (:data:`SAFE_ID`): use it for
team and user IDs a component files data under."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def updated(model: ModelT, **changes: Any) -> ModelT:
    """``model.model_copy(update=changes)``, for the hot loops of ``ingest``: a shallow copy
    with ``changes`` set, not validated (like ``model_copy``), but without pydantic's generic
    copying machinery, which costs more than the rest of a thread's trip through ingest. A test
    checks it equals ``model_copy``."""
    copy = model.__class__.__new__(model.__class__)
    _set = object.__setattr__
    _set(copy, "__dict__", {**model.__dict__, **changes})
    _set(copy, "__pydantic_fields_set__", model.__pydantic_fields_set__ | changes.keys())
    extra, private = model.__pydantic_extra__, model.__pydantic_private__
    _set(copy, "__pydantic_extra__", None if extra is None else dict(extra))
    _set(copy, "__pydantic_private__", None if private is None else dict(private))
    return copy


class User(_Model):
    """A workspace member as the source knows them. IDs are stable; names are not unique."""

    id: str = Field(description="stable ID (Slack: `U…`/`W…`); the directory name of the person's data")
    name: str = Field("", description="the handle (Slack's `name`)")
    display_name: str = Field("", description="the name shown in chat, if the person set one")
    real_name: str = Field("", description="the full name")
    is_bot: bool = Field(False, description="a bot or an app (never a persona)")
    deleted: bool = Field(False, description="the account was deactivated")

    @property
    def label(self) -> str:
        """The name people see in chat: display name, else real name, else handle, else ID."""
        return self.display_name or self.real_name or self.name or self.id


class Workspace(_Model):
    """A team and its members, as read by a source before any thread."""

    team: str = Field(description="team ID (Slack: `T…`), safe as a directory name")
    name: str = Field("", description="the workspace's name")
    users: list[User] = Field(default_factory=list, description="every member the source knows")
    channels: dict[str, str] = Field(
        default_factory=dict,
        description="channel ID → name, for `<#C…>` mentions: the channels the source may read (a "
        "mention of any other stays its ID)",
    )
    default_persona: str | None = Field(
        None,
        description="whom to imitate when `persona.user` is not set: only a bundled demo workspace "
        "sets it, so a bare `doppelkit` runs; real workspaces leave it empty",
    )

    @field_validator("team")
    @classmethod
    def _team_is_safe(cls, v: str) -> str:
        return validate_safe_id(v, "team")

    def user_by_id(self) -> dict[str, User]:
        return {u.id: u for u in self.users}


TS_FORMAT = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,9})?$")


def validate_ts(value: object) -> str:
    """A timestamp as Slack writes one: epoch seconds as a string, with a fraction."""
    if isinstance(value, str) and TS_FORMAT.fullmatch(value):
        return value
    raise ValueError(
        "ts must be epoch seconds as a string with a fraction, as Slack writes it, e.g. "
        "'1700000000.000100' (a source converts its own timestamps to this; "
        "f'{seconds:.6f}' does it for a number of seconds)"
    )


class Message(_Model):
    """One chat message, already resolved to its final (edited) text.

    ``text`` is the raw platform text (Slack mrkdwn for Slack sources); formatters clean it.
    """

    ts: str = Field(
        description="when it was posted: epoch seconds as a string with a fraction, as Slack writes "
        'it (`"1700000000.000100"`); unique in its channel; sort with `ts_key` (a number). Anything '
        "else is refused, naming the source that built it"
    )
    user: str | None = Field(None, description="the author's user ID; `null` for integrations without one")
    text: str = Field(
        "", description="the text as the platform stores it (Slack: mrkdwn); formatters clean it"
    )
    is_bot: bool = Field(False, description="posted by a bot or an integration (context, never the persona)")
    subtype: str | None = Field(
        None,
        description="the platform's message kind (Slack: `thread_broadcast`, `me_message`…); null: plain",
    )
    thread_ts: str | None = Field(None, description="the `ts` of the thread's root, for replies")
    edited: bool = Field(False, description="the author edited it (`text` is the final version)")
    files: int = Field(0, description="how many files were attached (their content is never read)")

    @field_validator("ts")
    @classmethod
    def _ts_is_epoch_seconds(cls, value: str) -> str:
        return validate_ts(value)

    @property
    def ts_key(self) -> float:
        return float(self.ts)


class Thread(_Model):
    """A conversation: a thread's root and replies ordered by timestamp.

    A top-level message without replies is a thread of one message; the pipeline can merge
    such messages into time-gap "sessions" (``kind="session"``, see ``doppelkit.threads``).

    ``user_labels`` maps the IDs of the people in the thread (authors and ``<@U…>`` mentions)
    to the name shown in chat, so formatters can write ``Ann: …`` and ``@Ann`` without the
    whole workspace; ``channel_labels`` does the same for ``<#C…>`` mentions without an inline
    name. Sources may leave them empty: ``ingest`` fills them from the workspace; a frontend
    fills them from what it looked up. IDs without a label render as the ID.
    """

    team: str = Field(description="team ID")
    channel: str = Field(description="channel ID")
    channel_name: str = Field("", description="the channel's name, for `{channel}` in system prompts")
    ts: str = Field(description="the root message's `ts` (a session's: its first message's); same format")
    messages: list[Message] = Field(description="the root and its replies, ordered by `ts`")
    private: bool = Field(False, description="from a private channel (read only when asked to)")
    kind: Literal["thread", "session"] = Field(
        "thread",
        description="`session`: lone top-level messages merged by time (`dataset.session_gap_minutes`)",
    )
    user_labels: dict[str, str] = Field(
        default_factory=dict,
        description="user ID → the name shown in chat, for everyone the thread mentions or who wrote in "
        "it; `ingest` fills it from the workspace, frontends from who they looked up",
    )
    channel_labels: dict[str, str] = Field(
        default_factory=dict,
        description="channel ID → name, for the thread's `<#C…>` mentions without an inline name; "
        "`ingest` fills it from the workspace, frontends from what they looked up",
    )
    platform: str = Field(
        "",
        description="the chat platform (`Slack`, `Discord`): ingest sets the source's, an engine the one "
        "the persona was trained on, so system prompts name it the same in both",
    )

    @field_validator("ts")
    @classmethod
    def _ts_is_epoch_seconds(cls, value: str) -> str:
        return validate_ts(value)


Role = Literal["system", "user", "assistant"]


class ChatMessage(_Model):
    """One OpenAI-style chat turn."""

    role: Role = Field(description="`system`, `user` (the conversation so far) or `assistant` (the persona)")
    content: str = Field(description="the turn's text")


class Example(_Model):
    """One training example: OpenAI chat ``messages`` plus provenance ``meta``.

    Serialised one per line in the dataset JSONL. ``meta`` records where the example came
    from (team, channel, thread ts, message ts of the response, source name) so every example
    can be traced back and deleted on request.
    """

    messages: list[ChatMessage] = Field(description="system prompt, context turns, then the persona's reply")
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="provenance: `team`, `channel`, `thread_ts`, `message_ts` (the reply's messages), "
        "`source`, `formatter`, `thread_kind`, …",
    )

    @property
    def response(self) -> str:
        """The assistant turn this example teaches (its last message)."""
        return self.messages[-1].content if self.messages else ""


class PersonaSelector(_Model):
    """Who the bot should sound like: ``user`` is a Slack ID, display name or real name."""

    user: ID | None = None
    team: ID | None = None  # optional; needed only when a source holds several teams


class Persona(_Model):
    """A resolved persona: the user record and the team it belongs to."""

    team: str
    user: User

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def label(self) -> str:
        return self.user.label


class SkippedFile(_Model):
    """An input file (or line) a source could not use; the run goes on without it."""

    path: str = Field(description="the file (or `file:line`) inside the input")
    reason: str = Field(description="why it was skipped")


class DatasetReport(_Model):
    """What an ingest saw, kept and dropped; printed and saved beside the dataset."""

    source: str = Field("", description="the source's name (`slack_export`, `slack`, …)")
    formatter: str = Field("", description="the formatter's name")
    team: str = Field("", description="team ID")
    persona_id: str = Field("", description="the persona's user ID")
    persona_name: str = Field("", description="the persona's name as shown in chat")
    persona_user: User | None = Field(
        None, description="the persona's whole user record, so later steps find them by any name"
    )
    threads_seen: int = Field(0, description="threads (and sessions) read from the source")
    messages_seen: int = Field(0, description="messages in them")
    channels_read: int = Field(0, description="conversations the threads came from")
    private_channels_read: int = Field(0, description="of which private (only with the source's opt-in)")
    persona_messages: int = Field(0, description="messages by the persona in the threads read, used or not")
    threadless_channels: int = Field(
        0,
        description="channels where nobody ever replied in a thread, read as time-gap sessions "
        "(`dataset.threadless_gap_minutes`)",
    )
    platform: str | None = Field(
        None,
        description='what the source read (`Slack`; `""` when it does not say); `null`: ingested '
        "before it was recorded, when every source was Slack-shaped",
    )
    candidate_persona_messages: int = Field(0, description="messages the persona wrote")
    examples_kept: int = Field(0, description="examples written (training + held out)")
    train_examples: int = Field(0, description="examples in the dataset")
    eval_examples: int = Field(0, description="examples in the held-out split")
    drops: dict[str, int] = Field(
        default_factory=dict,
        description="what was left out, by reason (`too_short`, `bot`, `channel_join`, …)",
    )
    persona_drops: dict[str, int] = Field(
        default_factory=dict,
        description="the persona's own messages that did not become (part of) an example, by reason "
        "(`too_short`, `empty`, `system_event`)",
    )
    scrubbed: dict[str, int] = Field(
        default_factory=dict, description="what scrubbers redacted, by kind (`email`, `aws_access_key`, …)"
    )
    generated_text: dict[str, int] = Field(
        default_factory=dict,
        description="text the platform wrote into people's messages, left out, by kind (`file_upload`: "
        'Slack\'s "uploaded a file: …" lines, `file_comment`): messages keep what the person typed',
    )
    authors: dict[str, int] = Field(
        default_factory=dict,
        exclude=True,
        description="messages per person (user ID) in the threads read, to suggest who else could be a "
        "persona when this one has nothing to learn from; not saved",
    )
    skipped_files: list[SkippedFile] = Field(
        default_factory=list, description="input files not read, and why"
    )
    dataset_path: str = Field("", description="the dataset JSONL")
    eval_path: str = Field("", description='the held-out JSONL (`""` without a held-out split)')
    dataset_sha256: str = Field("", description="SHA-256 of the dataset file")
    corpus_path: str = Field(
        "", description='the team\'s workspace corpus written in the same pass (`""` when none)'
    )
    corpus_sha256: str = Field("", description="its SHA-256 (names the tiny base built from it)")
    created: datetime = Field(default_factory=lambda: datetime.now(UTC), description="when (UTC)")

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` items dropped for ``reason`` (e.g. ``too_short``, ``bot``, ``private``)."""
        self.drops[reason] = self.drops.get(reason, 0) + n

    def persona_drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` of the persona's own messages not used for ``reason`` (also in :meth:`drop`)."""
        self.persona_drops[reason] = self.persona_drops.get(reason, 0) + n

    def left_out_generated(self, kind: str, n: int = 1) -> None:
        """Count ``n`` messages from which generated text of ``kind`` was left out."""
        self.generated_text[kind] = self.generated_text.get(kind, 0) + n

    def count_scrubbed(self, counts: Counter[str] | dict[str, int]) -> None:
        for kind, n in counts.items():
            self.scrubbed[kind] = self.scrubbed.get(kind, 0) + n

    def skip_file(self, path: str, reason: str) -> None:
        self.skipped_files.append(SkippedFile(path=path, reason=reason))

    def merge(self, other: DatasetReport) -> None:
        """Add what ``other`` counted (a part of the same ingest, read elsewhere) to this report,
        as if this report had counted it itself, in the same order."""
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, n in other.drops.items():
            self.drop(reason, n)
        for reason, n in other.persona_drops.items():
            self.persona_drop(reason, n)
        for kind, n in other.generated_text.items():
            self.left_out_generated(kind, n)
        for author, n in other.authors.items():
            self.authors[author] = self.authors.get(author, 0) + n
        self.count_scrubbed(other.scrubbed)
        self.skipped_files.extend(other.skipped_files)

    COUNTS: ClassVar[tuple[str, ...]] = (
        "threads_seen",
        "messages_seen",
        "channels_read",
        "private_channels_read",
        "persona_messages",
        "threadless_channels",
        "candidate_persona_messages",
        "examples_kept",
        "train_examples",
        "eval_examples",
    )


class AdapterManifest(_Model):
    """``manifest.json`` stored beside each published adapter version."""

    version: str = Field(description="`v1`, `v2`, …: the version directory's name, never reused")
    team: str = Field(description="team ID")
    persona_id: str = Field(description="the persona's user ID")
    persona_name: str = Field(description="the persona's name as shown in chat")
    persona_user: User | None = Field(
        None, description="the whole user record: serving finds the persona by any of its names"
    )
    base_model: str = Field(description="`model.name` it was trained on (`tiny`, a hub ID, a directory)")
    model_revision: str | None = Field(
        None, description="the hub revision; for `tiny`, the cache key of the exact base under home"
    )
    trainer: str = Field(description="the trainer's name")
    trainer_config: dict[str, Any] = Field(default_factory=dict, description="its validated `trainer.*`")
    formatter: str = Field(description="the formatter it was trained with: serving builds prompts with it")
    formatter_config: dict[str, Any] = Field(default_factory=dict, description="its validated `formatter.*`")
    template_hash: str = Field(description="hash of the formatter, its config and the chat template")
    dataset_hash: str = Field(description="SHA-256 of the dataset trained on")
    platform: str | None = Field(
        None,
        description="the chat platform the dataset came from (its report's); `null`: trained before it "
        "was recorded, when every source was Slack-shaped",
    )
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="training and evaluation figures and the persona report"
    )
    doppelkit_version: str = Field(description="the doppelkit version that trained it")
    created: datetime = Field(
        default_factory=lambda: datetime.now(UTC), description="when it was published (UTC)"
    )
