"""``/doppel train``: ingest → train → publish in a background thread, with progress posts.

The store's state machine tracks the run (``scraping → training → trained | failed``); its
unique (team, user) row is claimed before the thread starts, so two concurrent ``train``
commands for one person cannot both run. The steps are injectable: tests pass fakes, the bot
uses :class:`PipelineSteps` (the same jobs as ``doppelkit ingest`` and ``doppelkit train``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from doppelkit.errors import UserError
from doppelkit.interfaces import RunContext
from doppelkit.models import Persona, User
from doppelkit_slack.store import FAILED, TRAINED, TRAINING, PersonaStore

log = logging.getLogger("doppelkit.bolt")
Notify = Callable[[str, str, str], None]  # (team, channel, text)


class TrainingSteps(Protocol):
    def ingest(self, persona: Persona) -> tuple[int, Any]:
        """Read the workspace and write the dataset: (examples kept, handle for ``train``)."""
        ...

    def train(self, persona: Persona, ingested: Any) -> str:
        """Fine-tune and publish; the published version."""
        ...


class PipelineSteps:
    """The real steps: ``doppelkit.jobs.ingest`` and ``train`` for the persona, with the run's
    configuration, on the run's backend (in this process, a fresh one, or remotely)."""

    def __init__(self, context: RunContext) -> None:
        if context.run is None:
            raise UserError(
                "`/doppel train` needs the run configuration (start the bot with `doppelkit serve`)."
            )
        self.context = context
        self.run = context.run

    def ingest(self, persona: Persona) -> tuple[int, Any]:
        from doppelkit import jobs

        run = self.run.with_persona(persona.team, persona.id)
        ingested = jobs.ingest(run, self.context)
        if ingested.persona.team != persona.team:
            raise UserError(
                f"the configured source reads workspace {ingested.persona.team}, not this one "
                f"({persona.team}); point source.* at this workspace's export or API."
            )
        return ingested.report.examples_kept, ingested

    def train(self, persona: Persona, ingested: Any) -> str:
        from doppelkit import jobs

        run = self.run.with_persona(persona.team, persona.id)
        return jobs.train(run, self.context, ingested.persona).version


class TrainingRunner:
    def __init__(self, store: PersonaStore, steps: Callable[[], TrainingSteps], notify: Notify) -> None:
        self.store = store
        self.steps = steps
        self.notify = notify
        self.threads: list[threading.Thread] = []

    def start(self, team: str, channel: str, user: User, *, requested_by: str, limit: int) -> None:
        """Claim the persona (raises PersonaBusy / PersonaLimitReached) and train in the background."""
        self.store.begin_training(team, user.id, user.label, requested_by=requested_by, limit=limit)
        persona = Persona(team=team, user=user)
        thread = threading.Thread(
            target=self._run, args=(persona, channel), name=f"doppel-train-{user.id}", daemon=True
        )
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()

    def _run(self, persona: Persona, channel: str) -> None:
        team, name = persona.team, persona.label
        try:
            steps = self.steps()
            self.notify(team, channel, f"Reading {name}'s messages…")
            examples, ingested = steps.ingest(persona)
            self.store.set_state(team, persona.id, TRAINING)
            self.notify(team, channel, f"Training {name} on {examples} examples… this can take a while.")
            version = steps.train(persona, ingested)
            self.store.set_state(team, persona.id, TRAINED, version=version)
            if self.store.active_user(team) is None:
                self.store.set_active(team, persona.id)
            self.notify(team, channel, f"{name} is ready ({version}). Mention me to talk to them.")
        except BaseException as exc:
            reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, UserError):
                log.exception("training %s failed", persona.id)
            try:
                self.store.set_state(team, persona.id, FAILED, error=reason[:1000])
            except Exception:  # forgotten meanwhile, or the store is down
                log.exception("could not record the failure of %s", persona.id)
            self.notify(team, channel, f"Training {name} failed: {reason[:500]}")

    def join(self, timeout: float | None = None) -> None:
        for thread in list(self.threads):
            thread.join(timeout)
