"""Hook specifications: the whole surface a doppelkit plugin can implement.

A plugin is any module or object with functions decorated by :data:`doppelkit.hookimpl` whose
names match the specs below. Installed distributions expose plugins through the ``doppelkit``
entry-point group::

    [project.entry-points.doppelkit]
    jsonl = "doppelkit_jsonl"

Every hook is optional; implement only what your plugin provides. The reference manual with
examples is ``docs/plugins/hooks.md`` (a test fails when a hook here is not documented there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from doppelkit.settings import ScrubConfig

if TYPE_CHECKING:
    from doppelkit.home import Home

PROJECT = "doppelkit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type[Any]], None]


@hookspec
def register_sources(register: Register) -> None:
    """Register source classes: ``register(MySource)``.

    A source reads a workspace (members, then threads). The class needs ``name``, a pydantic
    ``Config`` and the methods of :class:`doppelkit.interfaces.Source`. Selected with
    ``source=<name>``; configured under ``source.*``.
    """


@hookspec
def register_formatters(register: Register) -> None:
    """Register formatter classes: ``register(MyFormatter)``.

    A formatter turns threads into training examples and, at serve time, conversations into
    prompts — one code path for both. See :class:`doppelkit.interfaces.Formatter`. Selected with
    ``formatter=<name>``; configured under ``formatter.*``.
    """


@hookspec
def register_trainers(register: Register) -> None:
    """Register trainer classes: ``register(MyTrainer)``.

    A trainer fine-tunes the configured base model (``model.*``) on a dataset and publishes a
    versioned adapter under ``home`` (:mod:`doppelkit.artifacts`). See
    :class:`doppelkit.interfaces.Trainer`. Selected with ``trainer=<name>``; configured under
    ``trainer.*``.
    """


@hookspec
def register_engines(register: Register) -> None:
    """Register engine classes: ``register(MyEngine)``.

    An engine serves persona replies from the adapters published under ``home``: one base
    model, many personas, each prompted by the formatter it was trained with. See
    :class:`doppelkit.interfaces.Engine`. Selected with ``engine=<name>``; configured under
    ``engine.*``. ``doppelkit chat`` and ``doppelkit serve`` build it and hand it to the
    frontend.
    """


@hookspec
def register_backends(register: Register) -> None:
    """Register backend classes: ``register(MyBackend)``.

    A backend decides where a step (ingest, train, serve) runs: steps are module-level
    functions of plain data (:mod:`doppelkit.steps`). No backend selected means the built-in
    ``local`` backend. Selected with ``+backend=<name>`` (the ``+`` is needed because the
    backend group is not in the defaults list); configured under ``backend.*``.
    """


@hookspec
def register_frontends(register: Register) -> None:
    """Register frontend classes: ``register(MyFrontend)``.

    A frontend serves personas to people (a Slack bot, a terminal chat). See
    :class:`doppelkit.interfaces.Frontend`. Selected with ``frontend=<name>``; configured under
    ``frontend.*``.
    """


@hookspec
def scrub_message(text: str, record: Callable[[str, int], None], config: ScrubConfig) -> str | None:
    """Redact ``text`` before it reaches disk or a model; return the new text or ``None``.

    Implementations are chained: each receives the text as redacted by the ones before it
    (plugins registered later run first, as usual in pluggy). Call ``record(kind, count)`` for
    every kind of secret you redacted (``record("email", 2)``): the counts appear in the
    dataset report. Return ``None`` to leave the text unchanged. ``config`` is the validated
    core ``scrub`` section (:class:`doppelkit.settings.ScrubConfig`); like every hook argument
    it is optional in an implementation's signature. Replace what you redact with a marker
    such as ``[REDACTED:email]``, and never match your own markers (scrubbing runs again at
    serve time, on text that may already be scrubbed).
    """


@hookspec
def forget_person(team: str, user: str, home: Home) -> list[str] | None:
    """Delete everything this plugin wrote under ``home`` about one person of one team.

    Called by ``/doppel forget``, by a declined consent and by any other "forget me" path,
    for every plugin: each removes only the files it wrote (datasets and adapters are the
    core's, checkpoints the trainer's, cached avatars the bot's, …). ``team`` and ``user``
    are validated IDs. Return short names of what you removed (``["training checkpoints"]``)
    for the confirmation message, or ``None`` when there was nothing. Never follow a symlink
    out of home: :meth:`doppelkit.home.Home.remove` does the deleting safely.
    """


@hookspec
def forget_team(team: str, home: Home) -> list[str] | None:
    """Delete everything this plugin wrote under ``home`` for a whole team (workspace).

    Called when a workspace uninstalls the app or revokes its bot token, and when the last
    persona of a team is forgotten: team-wide data (a workspace corpus, base models built from
    it, an unfinished scrape) goes too. Return short names of what you removed, or ``None``.
    """


@hookspec(firstresult=True)
def locate_base(base_model: str, model_revision: str | None, home: Home) -> tuple[str, str | None] | None:
    """Where to load the base model of a published adapter from, when your plugin built it.

    ``base_model`` and ``model_revision`` are the adapter manifest's fields. A trainer that
    builds bases itself under ``home`` (``lora``'s ``model=tiny`` lives in its own cache
    folder) answers ``(location, revision)`` for the ones it owns, so any engine can load them
    without knowing that plugin's files; return ``None`` for every other base. Without an
    answer the base is ``base_model`` itself (a hub id or a local folder). The first answer wins.
    """
