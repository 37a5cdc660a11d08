"""An :class:`~doppelkit.interfaces.Engine` whose replies come from the ``Engine`` class on Modal.

The frontend (the Slack bot in its web container, the terminal chat on this machine) talks to
it like to any engine; persona and thread travel as JSON data, text comes back. Where the
Volume holding ``home`` is mounted (the web container), which personas exist and which version
answers are read from it directly — listing personas for ``/doppel list`` never wakes a GPU;
elsewhere (the terminal) the engine class answers those too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from doppelkit import artifacts
from doppelkit.home import Home
from doppelkit.models import AdapterManifest, Persona, Thread, validate_safe_id
from doppelkit_modal.sides import EngineHandle


class RemoteEngine:
    """``engine=…`` of the run, running in Modal's ``Engine`` class (see module docstring)."""

    name: ClassVar[str] = "modal-remote"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(
        self,
        handle: EngineHandle,
        *,
        home: Home | None = None,
        refresh: Callable[..., None] | None = None,
    ) -> None:
        self.handle = handle
        self.home = home
        self.refresh = refresh or (lambda force=False: None)

    def current_version(self, team: str, user: str) -> str | None:
        validate_safe_id(team, "team")
        validate_safe_id(user, "user")
        if self.home is None:
            return self.handle.current_version(team, user)
        self.refresh()
        published = artifacts.current_version(self.home, team, user)
        if published is None:  # maybe just trained: look again, now
            self.refresh(force=True)
            published = artifacts.current_version(self.home, team, user)
        return published.version if published else None

    def personas(self) -> list[AdapterManifest]:
        if self.home is None:
            return [AdapterManifest.model_validate(m) for m in self.handle.personas()]
        self.refresh()
        return artifacts.published_personas(self.home)

    def stream(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> Iterator[str]:
        return self.handle.stream(_data(persona), _data(thread), bot_user_id)

    def reply(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> list[str]:
        return self.handle.reply(_data(persona), _data(thread), bot_user_id)

    def close(self) -> None:
        """Nothing to free here: the engine's containers scale down by themselves."""


def _data(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
