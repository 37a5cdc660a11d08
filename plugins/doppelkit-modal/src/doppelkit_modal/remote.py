# No `from __future__ import annotations` in this module, on purpose: modal 1.6 reads the class
# bodies' annotations at decoration time, and string annotations break it.
"""What runs in Modal's containers: the bodies of the app's functions and classes.

They are *defined* here, at module level, and *decorated* from configuration in
:func:`doppelkit_modal.app.build_app`; a container imports this module and finds them by name.
Each body is a thin shell around the same code a local run uses: ``train`` and ``job`` run a
:mod:`doppelkit.steps` step of plain data, ``Engine`` wraps the engine the run configures
(``engine=``, built with :func:`doppelkit.pipeline.build_engine`), ``Web`` hosts the frontend
the run configures (``frontend=``) as an ASGI application.

The Volume holding ``home`` is reached only through a :class:`~doppelkit_modal.sides.ContainerSide`:
in a container it reloads and commits the real Volume and calls the deployed functions by
name; under ``.local()`` (tests) a temporary directory stands in for the Volume and calls stay
in the process. The bodies themselves only ever see a plain ``home`` path.
"""

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from importlib import import_module
from typing import Any

import modal

from doppelkit_modal.remote_env import RUN_ENV  # the deployed run (JSON), set by app.build_app

STORE_URL_ENV = "DOPPELKIT_STORE_URL"  # the bot's database, from a Modal Secret (backend.web_secrets)
ENGINE_NEEDS = ("engine",)
WEB_NEEDS = ("frontend", "backend")
log = logging.getLogger("doppelkit.modal")


def deployed_run_data() -> dict[str, Any]:
    """The run configuration the deployment was made with (``env`` of the class)."""
    raw = os.environ.get(RUN_ENV)
    if not raw:
        raise RuntimeError(
            f"{RUN_ENV} is not set: this class runs only as deployed by `doppelkit serve +backend=modal`"
        )
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise RuntimeError(f"{RUN_ENV} does not hold a run configuration")
    return data


def _quiet(run_data: dict[str, Any] | None) -> None:
    """Library warnings stay out of the logs that stream back, as they stay off the terminal
    locally (``doppelkit.quiet``) — unless the run is ``verbose=true``."""
    from doppelkit.quiet import be_verbose, quiet_libraries

    if run_data is not None and run_data.get("verbose"):
        be_verbose()
    else:
        quiet_libraries()


def _side(run_data: dict[str, Any]) -> Any:
    from doppelkit_modal.sides import container_side

    return container_side(run_data)


def resolve_step(reference: str) -> Any:
    """``"package.module:function"`` → the function (steps travel by name, as data)."""
    module, _, qualname = reference.partition(":")
    target: Any = import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{reference} is not callable")
    return target


# --- functions ------------------------------------------------------------------------------------


def train(run_data: dict[str, Any], team: str, user: str, device: str | None = None) -> dict[str, Any]:
    """The train step on the training GPU. ``run_data["home"]`` is the Volume's mount path.

    The dataset was uploaded (or written by an ingest in the bot's job) just before: reload the
    Volume first, a warm container holds an older view of it. Checkpoints land on the Volume as
    the trainer writes them (Modal commits in the background and when the container stops), so
    a retry — a preemption, a crash — resumes from the last one; the commit after the step
    makes the published adapter visible to every other container at once. A failed run never
    moves ``CURRENT`` (the core's atomic publish), so the previous version stays current.
    """
    from doppelkit import steps

    _quiet(run_data)
    side = _side(run_data)
    side.reload(force=True)
    try:
        return steps.train(run_data, team, user, device=device)
    finally:
        side.commit()


def job(reference: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Any step, by reference, on a CPU container: what a backend's ``spawn`` starts (the bot's
    ``/doppel train``: read the workspace, train on the GPU, report in Slack) and the fallback
    for steps the backend has no special place for."""
    step = resolve_step(reference)
    run_data = next((a for a in args if isinstance(a, dict) and "backend" in a and "home" in a), None)
    _quiet(run_data)
    side = _side(run_data) if run_data is not None else None
    if side is not None:
        side.reload(force=True)
    try:
        return step(*args, **kwargs)
    finally:
        if side is not None:
            side.commit()


# --- classes ----------------------------------------------------------------------------------------


class Engine:
    """The serving engine on the serving GPU: the base model loads once per container
    (``@modal.enter``), every persona is an adapter read from the Volume, and newly published
    versions are picked up by reloading the Volume — no redeploy.

    Persona and thread travel as JSON data; replies come back as text.
    """

    @modal.enter()
    def load(self) -> None:
        from doppelkit import pipeline, steps
        from doppelkit_modal.config import ModalConfig

        data = deployed_run_data()
        _quiet(data)
        self.side = _side(data)
        self.side.reload(force=True)
        run, context = steps.rebuild(data, ENGINE_NEEDS)
        config = ModalConfig.model_validate({k: v for k, v in data["backend"].items() if k != "name"})
        context.device = config.serve_device
        self.engine = pipeline.build_engine(run, context)
        try:
            self.loaded = warm_up(self.engine)
        except Exception:  # one bad persona must not keep every container from starting
            log.exception("warm-up failed; the base model loads with the first request instead")
            self.loaded = 0.0

    def _fresh(self, team: str, user: str) -> None:
        """See what was published since: reload the Volume now and then, and at once for a
        persona this container has no version of yet (it was just trained)."""
        self.side.reload()
        if self.engine.current_version(team, user) is None:
            self.side.reload(force=True)

    @modal.method()
    def reply(self, persona: dict[str, Any], thread: dict[str, Any], bot_user_id: Any = None) -> list[str]:
        who, conversation = _persona_thread(persona, thread)
        self._fresh(who.team, who.id)
        return list(self.engine.reply(who, conversation, bot_user_id=bot_user_id))

    @modal.method()
    def stream(
        self, persona: dict[str, Any], thread: dict[str, Any], bot_user_id: Any = None
    ) -> Iterator[str]:
        who, conversation = _persona_thread(persona, thread)
        self._fresh(who.team, who.id)
        yield from self.engine.stream(who, conversation, bot_user_id=bot_user_id)

    @modal.method()
    def personas(self) -> list[dict[str, Any]]:
        self.side.reload()
        return [manifest.model_dump(mode="json") for manifest in self.engine.personas()]

    @modal.method()
    def current_version(self, team: str, user: str) -> Any:
        self._fresh(team, user)
        return self.engine.current_version(team, user)

    @modal.exit()
    def close(self) -> None:
        self.engine.close()


class _WebEndpoint:
    """The frontend (``frontend=bolt``) as an ASGI web endpoint on a CPU container.

    Replies are generated by the ``Engine`` class on the GPU; this container acknowledges Slack
    (within its 3 seconds), reads which personas exist from the Volume, and posts.
    """

    def _prepare(self) -> None:
        """What needs no network: imports, the plugins, the validated configuration."""
        from doppelkit import pipeline, steps
        from doppelkit.errors import UserError
        from doppelkit.interfaces import WebFrontend
        from doppelkit_modal.hosting import resolve_store_url

        data = resolve_store_url(deployed_run_data(), os.environ.get(STORE_URL_ENV))
        _quiet(data)
        self.run, self.context = steps.rebuild(data, WEB_NEEDS)
        self.frontend = pipeline.make(self.run["frontend"], self.context)
        if not isinstance(self.frontend, WebFrontend):
            raise UserError(f"frontend={self.run['frontend'].name} cannot be served as a web application")
        self.frontend.prepare()
        self.data = data

    def _start(self) -> None:
        """The database, Slack's client, worker threads: after a snapshot is restored."""
        from doppelkit_modal.engine_proxy import RemoteEngine

        side = _side(self.data)
        side.reload(force=True)
        engine = RemoteEngine(side.engine(), home=self.context.home, refresh=side.reload)
        self.web = self.frontend.asgi_app(engine)

    @modal.asgi_app()
    def asgi(self) -> Any:
        return self.web

    @modal.exit()
    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.web.close()


class Web(_WebEndpoint):
    """The web endpoint with a memory snapshot (``backend.memory_snapshot=true``): the work that
    needs no network is done once, before the snapshot, instead of at every cold start."""

    @modal.enter(snap=True)
    def prepare(self) -> None:
        self._prepare()

    @modal.enter(snap=False)
    def start(self) -> None:
        self._start()


class WebNoSnapshot(_WebEndpoint):
    """The web endpoint without a memory snapshot (``backend.memory_snapshot=false``)."""

    @modal.enter()
    def start(self) -> None:
        self._prepare()
        self._start()


# --- helpers --------------------------------------------------------------------------------------


def _persona_thread(persona: dict[str, Any], thread: dict[str, Any]) -> tuple[Any, Any]:
    from doppelkit.models import Persona, Thread

    return Persona.model_validate(persona), Thread.model_validate(thread)


def warm_up(engine: Any) -> float:
    """Load the base model (and one adapter) now, in ``@modal.enter``, not on Slack's first
    mention: generate the first chunk of a reply for a published persona, then cancel it. Works
    for any engine; without a published persona nothing loads until the first request.
    Returns the seconds it took (0 when there was nothing to load)."""
    from doppelkit import artifacts
    from doppelkit.models import Message, Thread

    started = time.perf_counter()
    manifests = engine.personas()
    if not manifests:
        log.info("no persona published yet: the base model loads with the first request")
        return 0.0
    persona = artifacts.manifest_persona(manifests[0])
    thread = Thread(
        team=persona.team,
        channel="C0WARMUP",
        ts="1.000001",
        messages=[Message(ts="1.000001", user="U0WARMUP", text="hello")],
    )
    chunks = engine.stream(persona, thread)
    try:
        next(iter(chunks), None)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    seconds = time.perf_counter() - started
    log.info("engine warm: base model and %s loaded in %.1f s", persona.id, seconds)
    return seconds
