"""Deterministic stand-ins for heavy components, for frontend and pipeline tests.

:class:`EchoEngine` implements :class:`doppelkit.interfaces.Engine` without a model: it answers
with a predictable text built from the thread, can be made slow (to prove a frontend
acknowledges before generation finishes) and records every call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from doppelkit.errors import PersonaError
from doppelkit.models import AdapterManifest, Persona, Thread


@dataclass
class EngineCall:
    persona: Persona
    thread: Thread
    bot_user_id: str | None


@dataclass
class EchoEngine:
    """Replies ``"<label> says: <last message text>"`` (or ``reply_text`` when set).

    * ``versions`` — ``{(team, user): version}``; personas not listed have no adapter (``None``),
      unless ``every_persona_trained`` is true;
    * ``delay`` — seconds each reply takes (a busy model);
    * ``reply_text`` / ``messages`` — fixed output: one text, or several separate messages;
    * ``fail_with`` — raise this exception instead of answering;
    * ``labels`` — display names of the personas in ``versions`` (``personas()`` manifests).
    """

    name: ClassVar[str] = "echo"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    versions: dict[tuple[str, str], str] = field(default_factory=dict)
    every_persona_trained: bool = False
    delay: float = 0.0
    reply_text: str | None = None
    messages: list[str] | None = None
    fail_with: BaseException | None = None
    labels: dict[str, str] = field(default_factory=dict)  # user ID → name in personas() ("" if absent)
    calls: list[EngineCall] = field(default_factory=list)
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def current_version(self, team: str, user: str) -> str | None:
        if (team, user) in self.versions:
            return self.versions[(team, user)]
        return "v1" if self.every_persona_trained else None

    def personas(self) -> list[AdapterManifest]:
        """A manifest per persona listed in ``versions`` with a version (names: ``labels``)."""
        return [
            AdapterManifest(
                version=version,
                team=team,
                persona_id=user,
                persona_name=self.labels.get(user, ""),
                base_model="echo",
                trainer="echo",
                formatter="chat",
                template_hash="",
                dataset_hash="",
                doppelkit_version="",
            )
            for (team, user), version in sorted(self.versions.items())
        ]

    def _answer(self, persona: Persona, thread: Thread) -> list[str]:
        if self.messages is not None:
            return list(self.messages)
        if self.reply_text is not None:
            return [self.reply_text]
        last = thread.messages[-1].text if thread.messages else ""
        return [f"{persona.label} says: {last}"]

    def reply(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> list[str]:
        with self._lock:
            self.calls.append(EngineCall(persona, thread, bot_user_id))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        if self.current_version(persona.team, persona.id) is None:
            raise PersonaError(f"{persona.label} ({persona.id}) has no trained adapter")
        return self._answer(persona, thread)

    def stream(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> Iterator[str]:
        from doppelkit.builtins.formatters.turns import join_reply

        text = join_reply(self.reply(persona, thread, bot_user_id=bot_user_id))
        yield from (text[i : i + 7] for i in range(0, len(text), 7))

    def close(self) -> None:
        self.closed = True
