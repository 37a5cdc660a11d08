"""``/doppel train``: ingest → train → publish in the background, with progress posts.

The store's state machine tracks the run (``scraping → training → trained | failed``); its
unique (team, user) row is claimed before the work starts, so two concurrent ``train``
commands for one person cannot both run. The steps are injectable: tests pass fakes, the bot
uses :class:`PipelineSteps` (the same jobs as ``doppelkit ingest`` and ``doppelkit train``).

Where the work runs: on a thread of the bot's process, or — when the run's backend can start
a step detached (a :class:`~doppelkit.interfaces.DetachingBackend`, e.g. ``modal``, whose web
containers stop when idle) — as :func:`train_detached`, a step of plain data the backend
starts elsewhere: it rebuilds the store, Slack's client and the steps from the run's
configuration and does exactly what the thread would.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from doppelkit.errors import UserError
from doppelkit.interfaces import RunContext
from doppelkit.models import Persona, User
from doppelkit_slack.store import FAILED, TRAINED, TRAINING, PersonaStore

log = logging.getLogger("doppelkit.bolt")


class Notify(Protocol):
    def __call__(self, team: str, channel: str, text: str, response_url: str = "", /) -> None:
        """Tell the requester: through the command's ``response_url`` while it works, else in
        ``channel``."""
        ...


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

        # persona.team is this workspace: a source reading another one refuses it before
        # writing anything (doppelkit.persona.resolve_persona), never files it under its own.
        run = self.run.with_persona(persona.team, persona.id)
        ingested = jobs.ingest(run, self.context)
        return ingested.report.examples_kept, ingested

    def train(self, persona: Persona, ingested: Any) -> str:
        from doppelkit import jobs

        run = self.run.with_persona(persona.team, persona.id)
        return jobs.train(run, self.context, ingested.persona).version


Launch = Callable[[Persona, str], None]  # (persona, channel): start train_detached elsewhere


class TrainingNotStarted(UserError):
    """The backend could not start the detached training run."""


class TrainingCancelled(Exception):
    """The workspace went away (uninstalled) while the run was going."""


@dataclass
class _Run:
    cancelled: threading.Event = field(default_factory=threading.Event)
    cleanup: Callable[[], None] | None = None  # run once the run has stopped
    response_url: str = ""  # the command's: progress is reported there while it lasts


class TrainingRunner:
    def __init__(
        self,
        store: PersonaStore,
        steps: Callable[[], TrainingSteps],
        notify: Notify,
        launch: Launch | None = None,
    ) -> None:
        self.store = store
        self.steps = steps
        self.notify = notify
        self.launch = launch  # None: a thread of this process
        self.threads: list[threading.Thread] = []
        self._runs: dict[tuple[str, str], _Run] = {}
        self._runs_lock = threading.Lock()

    @property
    def detached(self) -> bool:
        return self.launch is not None

    def start(
        self,
        team: str,
        channel: str,
        user: User,
        *,
        requested_by: str,
        limit: int,
        response_url: str = "",
        training_limit: int | None = None,
    ) -> None:
        """Claim the persona (raises PersonaBusy / PersonaLimitReached / TrainingLimitReached)
        and train in the background."""
        self.store.begin_training(
            team, user.id, user.label, requested_by=requested_by, limit=limit, training_limit=training_limit
        )
        persona = Persona(team=team, user=user)
        if self.launch is not None:
            try:
                self.launch(persona, channel)
            except Exception as exc:
                log.exception("could not start training %s", persona.id)
                reason = f"could not start training: {type(exc).__name__}: {exc}"
                self.store.set_state(team, persona.id, FAILED, error=reason[:1000])
                raise TrainingNotStarted(f"Sorry, {reason[:300]}") from None
            return
        with self._runs_lock:
            self._runs[(team, user.id)] = _Run(response_url=response_url)
        thread = threading.Thread(
            target=self.run_claimed, args=(persona, channel), name=f"doppel-train-{user.id}", daemon=True
        )
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()

    def run_claimed(self, persona: Persona, channel: str) -> None:
        """The whole run for a persona whose row :meth:`start` claimed; never raises."""
        team, name = persona.team, persona.label
        with self._runs_lock:
            run = self._runs.setdefault((team, persona.id), _Run())

        def go_on() -> None:
            if run.cancelled.is_set():
                raise TrainingCancelled

        def tell(text: str) -> None:
            self.notify(team, channel, text, run.response_url)

        try:
            steps = self.steps()
            tell(f"Reading {name}'s messages…")
            examples, ingested = steps.ingest(persona)
            go_on()
            self.store.set_state(team, persona.id, TRAINING)
            tell(f"Training {name} on {examples} examples… this can take a while.")
            version = steps.train(persona, ingested)
            go_on()
            self.store.set_state(team, persona.id, TRAINED, version=version)
            if self.store.active_user(team) is None:
                self.store.set_active(team, persona.id)
            tell(f"{name} is ready ({version}). Mention me to talk to them.")
        except TrainingCancelled:
            log.info("training %s stopped: the workspace %s went away", persona.id, team)
        except BaseException as exc:
            if run.cancelled.is_set():  # failed because its files were deleted under it
                log.info("training %s stopped: the workspace %s went away", persona.id, team)
                return

            reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, UserError):
                log.exception("training %s failed", persona.id)
            try:
                self.store.set_state(team, persona.id, FAILED, error=reason[:1000])
            except Exception:  # forgotten meanwhile, or the store is down
                log.exception("could not record the failure of %s", persona.id)
            tell(f"Training {name} failed: {reason[:500]}")
        finally:
            with self._runs_lock:
                self._runs.pop((team, persona.id), None)
            if run.cancelled.is_set() and run.cleanup is not None:
                run.cleanup()  # what the step wrote after the workspace's data was deleted

    def cancel_team(self, team: str, cleanup: Callable[[], None]) -> int:
        return self.cancel(team, cleanup)

    def cancel(self, team: str, cleanup: Callable[[], None], *, user: str | None = None) -> int:
        """Stop the team's runs (or ``user``'s) at their next step boundary (a step in progress
        cannot be interrupted) and call ``cleanup`` after each stops; the number of runs stopped.
        Runs a backend started elsewhere are not reached (they fail when their rows are gone)."""
        with self._runs_lock:
            runs = [r for (t, u), r in self._runs.items() if t == team and user in (None, u)]
            for run in runs:
                run.cleanup = cleanup
                run.cancelled.set()
        return len(runs)

    def join(self, timeout: float | None = None) -> None:
        for thread in list(self.threads):
            thread.join(timeout)


DETACHED_NEEDS = ("source", "formatter", "frontend", "backend")


def train_detached(data: dict[str, Any], team: str, channel: str, user: dict[str, Any]) -> None:
    """``/doppel train`` as a step of plain data, for a backend to run detached (see the module
    docstring): ``data`` is the bot's run configuration, the persona row is already claimed."""
    from doppelkit import steps
    from doppelkit_slack.bolt.config import BoltConfig
    from doppelkit_slack.bolt.mentions import SYSTEM_USERNAME
    from doppelkit_slack.bolt.posting import Identity, post_messages
    from doppelkit_slack.store import default_url

    run, context = steps.rebuild(data, DETACHED_NEEDS)
    frontend = run["frontend"].config
    if not isinstance(frontend, BoltConfig):
        raise UserError("train_detached runs the bolt frontend's /doppel train")
    store = PersonaStore(frontend.store_url or default_url(context.home.state))
    client = detached_client(frontend, store, team)

    def notify(_team: str, where: str, text: str, response_url: str = "") -> None:
        post_messages(client, where, "", [text], Identity(SYSTEM_USERNAME))

    try:
        TrainingRunner(store, lambda: PipelineSteps(context), notify).run_claimed(
            Persona(team=team, user=User.model_validate(user)), channel
        )
    finally:
        store.dispose()


def detached_client(frontend: Any, store: PersonaStore, team: str) -> Any:
    """The Web API client a detached run posts with: ``SLACK_BOT_TOKEN``'s, or with
    ``frontend.oauth`` the team's installed bot token (from the installation store in the same
    database, refreshed if due; the app's ``SLACK_CLIENT_ID``/``SLACK_CLIENT_SECRET``)."""
    from doppelkit_slack.bolt.clients import TeamClients, client_factory
    from doppelkit_slack.bolt.config import BOT_TOKEN_ENV, CLIENT_ID_ENV, CLIENT_SECRET_ENV, required_secret

    make = client_factory(frontend)
    if not frontend.oauth:
        return make(required_secret(BOT_TOKEN_ENV, "the training run posts its progress to Slack"))
    from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
    from slack_sdk.oauth.token_rotation import TokenRotator

    why = "the training run posts its progress with the workspace's installed token"
    client_id = required_secret(CLIENT_ID_ENV, why)
    rotator = TokenRotator(
        client_id=client_id, client_secret=required_secret(CLIENT_SECRET_ENV, why), client=make(None)
    )
    installations = SQLAlchemyInstallationStore(client_id=client_id, engine=store.engine)
    return TeamClients(make, installations=installations, rotator=rotator)(team)
