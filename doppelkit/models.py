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
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

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


class User(_Model):
    """A workspace member as the source knows them. IDs are stable; names are not unique."""

    id: str
    name: str = ""  # the handle (Slack ``name``)
    display_name: str = ""
    real_name: str = ""
    is_bot: bool = False
    deleted: bool = False

    @property
    def label(self) -> str:
        """The name people see in chat: display name, else real name, else handle, else ID."""
        return self.display_name or self.real_name or self.name or self.id


class Workspace(_Model):
    """A team and its members, as read by a source before any thread."""

    team: str
    name: str = ""
    users: list[User] = Field(default_factory=list)
    # Who to imitate when ``persona.user`` is not set; only a bundled demo workspace sets it,
    # so a bare ``doppelkit`` runs the newcomer's job. Real workspaces leave it empty.
    default_persona: str | None = None

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

    ts: str  # epoch seconds with a fraction, as a string ("1700000000.000100"); sort with ``ts_key``
    user: str | None = None  # author ID; None for integrations without a user
    text: str = ""
    is_bot: bool = False
    subtype: str | None = None
    thread_ts: str | None = None
    edited: bool = False
    files: int = 0  # number of attached files (content is never read)

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
    whole workspace. Sources may leave it empty: ``ingest`` fills it from the workspace; a
    frontend fills it from the users it looked up. IDs without a label render as the ID.
    """

    team: str
    channel: str  # channel ID
    channel_name: str = ""
    ts: str  # the root message's ts (or the first message's, for sessions)
    messages: list[Message]
    private: bool = False
    kind: Literal["thread", "session"] = "thread"
    user_labels: dict[str, str] = Field(default_factory=dict)
    # The chat platform ("Slack", "Discord"): ingest sets the source's, an engine the one the
    # persona was trained on (the manifest's), so the system prompt is the same in both.
    platform: str = ""

    @field_validator("ts")
    @classmethod
    def _ts_is_epoch_seconds(cls, value: str) -> str:
        return validate_ts(value)


Role = Literal["system", "user", "assistant"]


class ChatMessage(_Model):
    """One OpenAI-style chat turn."""

    role: Role
    content: str


class Example(_Model):
    """One training example: OpenAI chat ``messages`` plus provenance ``meta``.

    Serialised one per line in the dataset JSONL. ``meta`` records where the example came
    from (team, channel, thread ts, message ts of the response, source name) so every example
    can be traced back and deleted on request.
    """

    messages: list[ChatMessage]
    meta: dict[str, Any] = Field(default_factory=dict)

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
    path: str
    reason: str


class DatasetReport(_Model):
    """What an ingest saw, kept and dropped; printed and saved beside the dataset."""

    source: str = ""
    formatter: str = ""
    team: str = ""
    persona_id: str = ""
    persona_name: str = ""
    # The whole user record, so later steps find the persona by any of its names.
    persona_user: User | None = None
    threads_seen: int = 0
    messages_seen: int = 0
    # What the source read ("Slack", …; "" when it does not say); system prompts name it.
    # None: ingested before it was recorded, when every source was Slack-shaped.
    platform: str | None = None
    candidate_persona_messages: int = 0
    examples_kept: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    drops: dict[str, int] = Field(default_factory=dict)
    scrubbed: dict[str, int] = Field(default_factory=dict)
    skipped_files: list[SkippedFile] = Field(default_factory=list)
    dataset_path: str = ""
    eval_path: str = ""
    dataset_sha256: str = ""
    # The team's workspace corpus written in the same pass (doppelkit.corpus); "" when none.
    corpus_path: str = ""
    corpus_sha256: str = ""
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` items dropped for ``reason`` (e.g. ``too_short``, ``bot``, ``private``)."""
        self.drops[reason] = self.drops.get(reason, 0) + n

    def count_scrubbed(self, counts: Counter[str] | dict[str, int]) -> None:
        for kind, n in counts.items():
            self.scrubbed[kind] = self.scrubbed.get(kind, 0) + n

    def skip_file(self, path: str, reason: str) -> None:
        self.skipped_files.append(SkippedFile(path=path, reason=reason))


class AdapterManifest(_Model):
    """``manifest.json`` stored beside each published adapter version."""

    version: str  # "v1", "v2", …
    team: str
    persona_id: str
    persona_name: str
    # The whole user record (handle, display and real name): serving finds the persona by any.
    persona_user: User | None = None
    base_model: str
    model_revision: str | None = None
    trainer: str
    trainer_config: dict[str, Any] = Field(default_factory=dict)
    formatter: str
    formatter_config: dict[str, Any] = Field(default_factory=dict)
    template_hash: str
    dataset_hash: str
    # The chat platform the dataset came from (its report's); None: trained before it was
    # recorded, when every source was Slack-shaped.
    platform: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    doppelkit_version: str
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
