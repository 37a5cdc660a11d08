"""doppelkit as a library: the same jobs as the CLI, from Python.

::

    import doppelkit

    doppelkit.run("persona.user=maya", home="~/.doppelkit")       # ingest → train → publish
    maya = doppelkit.get_persona("maya", home="~/.doppelkit")
    maya.reply("how is the billing page coming along?")            # ["…", "…"]

Every function takes the CLI's overrides as strings (``"trainer.max_steps=50"``, same grammar,
same validation) and ``home=``. Nothing is printed unless ``verbose=True`` (or a ``console``
is given); mistakes raise :class:`doppelkit.errors.UserError` subclasses — never exit the
process. One engine per home and engine configuration is shared by every persona handle in
the process and freed when the last handle closes (or at :func:`close`).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from rich.console import Console

from doppelkit.config import RunConfig
from doppelkit.conversation import Conversation as _Thread
from doppelkit.interfaces import Engine, RunContext, TrainResult
from doppelkit.models import AdapterManifest, DatasetReport, Persona, PersonaSelector, User

__all__ = [
    "Conversation",
    "Doppel",
    "PersonaInfo",
    "close",
    "get_persona",
    "ingest",
    "personas",
    "run",
    "train",
]

PathLike = str | os.PathLike[str]


# --- configuration ---------------------------------------------------------------------------


def _configure(
    overrides: Sequence[str],
    home: PathLike | None,
    needs: tuple[str, ...],
    console: Console | None,
    verbose: bool,
) -> tuple[RunConfig, RunContext]:
    from doppelkit import pipeline
    from doppelkit.cli import quote_literal_values
    from doppelkit.config import compose, validate
    from doppelkit.plugins import build_registries, default_plugin_manager

    for override in overrides:
        if not isinstance(override, str):
            raise TypeError(f"overrides are strings such as 'persona.user=maya', not {override!r}")
    args = list(overrides)
    if home is not None:
        args.append(f"home={Path(home).expanduser()}")
    pm = default_plugin_manager()
    registries = build_registries(pm)
    run = validate(compose(quote_literal_values(args), registries), registries, needs=needs)
    if console is None:
        console = Console(stderr=True) if verbose else Console(file=io.StringIO(), width=120)
    return run, pipeline.build_context(run, pm.hook, console, registries)


# --- the jobs ----------------------------------------------------------------------------------


def ingest(
    *overrides: str, home: PathLike | None = None, verbose: bool = False, console: Console | None = None
) -> DatasetReport:
    """``doppelkit ingest``: read the workspace, write the persona's dataset; its report."""
    from doppelkit import jobs
    from doppelkit.cli import VERB_NEEDS

    run, context = _configure(overrides, home, VERB_NEEDS["ingest"], console, verbose)
    report = jobs.ingest(run, context).report
    if verbose:
        jobs.print_dataset_report(report, context.console)
    return report


def train(
    *overrides: str, home: PathLike | None = None, verbose: bool = False, console: Console | None = None
) -> TrainResult:
    """``doppelkit train``: fine-tune and publish an adapter from the persona's dataset."""
    from doppelkit import jobs
    from doppelkit.cli import VERB_NEEDS

    run, context = _configure(overrides, home, VERB_NEEDS["train"], console, verbose)
    return jobs.train(run, context)


def run(
    *overrides: str, home: PathLike | None = None, verbose: bool = False, console: Console | None = None
) -> TrainResult:
    """``doppelkit``: ingest → train → evaluate → publish; the published adapter."""
    from doppelkit import jobs
    from doppelkit.cli import VERB_NEEDS

    run_config, context = _configure(overrides, home, VERB_NEEDS["run"], console, verbose)
    return jobs.run_pipeline(run_config, context)


# --- published personas ------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonaInfo:
    """A persona with a published adapter under home."""

    team: str
    id: str
    name: str  # the name people see (display name, else real name, else handle)
    version: str  # the version that answers ("v3")
    user: User  # every name the persona goes by
    manifest: AdapterManifest  # base model, formatter, metrics, …

    @classmethod
    def of(cls, manifest: AdapterManifest) -> PersonaInfo:
        from doppelkit.artifacts import manifest_user

        user = manifest_user(manifest)
        return cls(manifest.team, manifest.persona_id, user.label, manifest.version, user, manifest)


def personas(*overrides: str, home: PathLike | None = None) -> list[PersonaInfo]:
    """Every persona published under home, by team then ID (no model is loaded)."""
    from doppelkit.artifacts import published_personas

    _run, context = _configure(overrides, home, (), None, False)
    return [PersonaInfo.of(m) for m in published_personas(context.home)]


class _Engines:
    """One engine per (home, engine configuration) in this process, shared by persona handles."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[str, tuple[Engine, int]] = {}
        atexit.register(self.close_all)

    @staticmethod
    def key(run: RunConfig) -> str:
        return json.dumps([str(run.settings.home), run.to_data()["engine"]], sort_keys=True)

    def acquire(self, run: RunConfig, context: RunContext) -> tuple[str, Engine]:
        from doppelkit.pipeline import build_engine

        key = self.key(run)
        with self._lock:
            engine, users = self._engines.get(key) or (build_engine(run, context), 0)
            self._engines[key] = (engine, users + 1)
            return key, engine

    def release(self, key: str) -> None:
        with self._lock:
            held = self._engines.get(key)
            if held is None:
                return
            engine, users = held
            if users > 1:
                self._engines[key] = (engine, users - 1)
                return
            del self._engines[key]
        engine.close()

    def close_all(self) -> None:
        with self._lock:
            engines = [engine for engine, _ in self._engines.values()]
            self._engines.clear()
        for engine in engines:
            engine.close()


_ENGINES = _Engines()


def get_persona(
    name: str,
    *overrides: str,
    home: PathLike | None = None,
    team: str | None = None,
    verbose: bool = False,
) -> Doppel:
    """A published persona to talk to, found by ID, display name, real name or handle.

    ``team`` picks among teams when the same person was trained in several. The overrides
    configure the engine (``"engine.temperature=0"``, ``"engine=vllm"``).
    """
    from doppelkit.artifacts import find_published_persona

    run_config, context = _configure(overrides, home, ("engine",), None, verbose)
    key, engine = _ENGINES.acquire(run_config, context)
    try:
        persona = find_published_persona(
            engine.personas(), PersonaSelector(user=name, team=team), context.home
        )
    except BaseException:
        _ENGINES.release(key)
        raise
    return Doppel(persona, engine, key)


def close() -> None:
    """Free every engine this process holds (persona handles stop working)."""
    _ENGINES.close_all()


# --- talking to a persona ----------------------------------------------------------------------


class Doppel:
    """A published persona, ready to answer; returned by :func:`get_persona`.

    ``reply`` and ``stream`` answer one message; :meth:`conversation` keeps a thread going.
    Use it as a context manager, or call :meth:`close`, to release the shared engine.
    """

    def __init__(self, persona: Persona, engine: Engine, engine_key: str) -> None:
        self.persona = persona
        self.engine = engine
        self._engine_key: str | None = engine_key

    @property
    def id(self) -> str:
        return self.persona.id

    @property
    def team(self) -> str:
        return self.persona.team

    @property
    def name(self) -> str:
        return self.persona.label

    @property
    def version(self) -> str | None:
        """The published version answering now (a retrain is picked up at once)."""
        return self.engine.current_version(self.team, self.id)

    def reply(self, text: str, *, speaker: str = "you", channel: str = "chat") -> list[str]:
        """What the persona would post in answer to ``speaker`` saying ``text``: its messages."""
        return self.conversation(channel=channel).say(text, speaker=speaker)

    def stream(self, text: str, *, speaker: str = "you", channel: str = "chat") -> Iterator[str]:
        """The reply's text as it is generated (several messages are separated as in training:
        ``\\n\\n---\\n\\n``)."""
        return self.conversation(channel=channel).stream(text, speaker=speaker)

    def conversation(self, *, channel: str = "chat", max_messages: int = 100) -> Conversation:
        """A conversation that keeps the thread: each ``say`` sees everything said before."""
        self.ensure_open()
        return Conversation(self, channel=channel, max_messages=max_messages)

    def close(self) -> None:
        if self._engine_key is not None:
            _ENGINES.release(self._engine_key)
            self._engine_key = None

    def ensure_open(self) -> None:
        """Raise a clear error when the handle was closed."""
        if self._engine_key is None:
            from doppelkit.errors import UserError

            raise UserError(f"{self.name}'s handle is closed; get_persona({self.name!r}) again")

    def __enter__(self) -> Doppel:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Doppel {self.name} ({self.id}, team {self.team})>"


class Conversation:
    """A thread with a persona: people speak by name, the persona answers as it would in Slack."""

    def __init__(self, doppel: Doppel, *, channel: str = "chat", max_messages: int = 100) -> None:
        self.doppel = doppel
        self._thread = _Thread(doppel.persona, channel_name=channel, max_messages=max_messages)

    def say(self, text: str, *, speaker: str = "you") -> list[str]:
        """Add ``speaker``'s message; the persona's reply, as the messages it would post."""
        self.doppel.ensure_open()
        replies = self.doppel.engine.reply(self.doppel.persona, self._thread.say(text, speaker))
        self._thread.heard(replies)
        return replies

    def stream(self, text: str, *, speaker: str = "you") -> Iterator[str]:
        """Like :meth:`say`, the reply's text as it is generated; it joins the thread once read."""
        from doppelkit.builtins.formatters.turns import split_reply

        self.doppel.ensure_open()
        chunks = self.doppel.engine.stream(self.doppel.persona, self._thread.say(text, speaker))
        pieces = []
        for chunk in chunks:
            pieces.append(chunk)
            yield chunk
        self._thread.heard(split_reply("".join(pieces)))

    @property
    def messages(self) -> list[tuple[str, str]]:
        """``(speaker, text)`` of everything said so far, oldest first."""
        thread = self._thread.thread()
        return [(thread.user_labels.get(m.user or "", m.user or ""), m.text) for m in thread.messages]

    def reset(self) -> None:
        """Start over."""
        self._thread.reset()
