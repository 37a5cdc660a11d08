"""One small interface per plugin kind.

A component is a class with two class attributes and a constructor:

* ``name`` — the registry name users select it by (``source=slack_export``);
* ``Config`` — a pydantic model (``extra="forbid"``) validating its config section;
* ``__init__(self, config, context)`` — receives the *validated* ``Config`` instance (never a
  Hydra ``DictConfig``) and the :class:`RunContext`.

The interfaces are ``typing.Protocol`` classes: plugins implement them structurally, without
inheriting from doppelkit. ``doppelkit.testing.contracts`` holds one contract test suite per kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from doppelkit.home import Home
from doppelkit.models import (
    AdapterManifest,
    ChatMessage,
    DatasetReport,
    Example,
    Persona,
    PersonaSelector,
    Thread,
    Workspace,
)
from doppelkit.settings import ModelConfig, Settings

if TYPE_CHECKING:
    from rich.console import Console

    from doppelkit.config import RunConfig
    from doppelkit.registry import Registries

T = TypeVar("T")

KINDS: tuple[str, ...] = ("source", "formatter", "trainer", "engine", "backend", "frontend")


@dataclass
class RunContext:
    """What every component may use besides its own config.

    * ``settings`` — the validated core settings (``home``, ``persona``, ``dataset``, ``model``,
      ``scrub``): read-only by convention;
    * ``console`` — where to print progress and reports (rich);
    * ``hook`` — the plugin manager's hook relay, to call lifecycle hooks such as
      ``scrub_message`` or ``forget_person``;
    * ``registries`` — the installed components by kind, e.g. for an engine that builds each
      persona's formatter from its manifest;
    * ``run`` — the whole validated run (every selected component), for the rare component
      that starts other steps (the Slack bot's ``/doppel train``); ``None`` outside a run;
    * ``device`` — where the selected backend runs steps (``"cpu"``, ``"cuda"``); ``None`` when
      the backend does not say: the component then picks the best device it finds.

    ``home`` and ``persona`` are shortcuts into ``settings``.
    """

    settings: Settings
    console: Console
    hook: Any = None
    registries: Registries | None = None
    run: RunConfig | None = None
    device: str | None = None
    home: Home = field(init=False)

    def __post_init__(self) -> None:
        self.home = Home.at(self.settings.home)

    @property
    def persona(self) -> PersonaSelector:
        return self.settings.persona


class Component(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]


@runtime_checkable
class Source(Component, Protocol):
    """Reads a workspace: its members, then its conversations one thread at a time.

    ``threads`` must stream (bounded memory: at most one channel held at once) and record what
    it skipped in ``report`` (``report.drop("private")``, ``report.skip_file(path, reason)``).
    """

    def __init__(self, config: Any, context: RunContext) -> None: ...

    def workspace(self) -> Workspace: ...

    def threads(self, report: DatasetReport) -> Iterator[Thread]: ...


@dataclass(frozen=True)
class Partition:
    """One independent part of a workspace (a Slack export's channel), as a
    :class:`PartitionedSource` lists it: ``key`` is whatever the source needs to read it again
    (picklable), ``size`` a rough measure of its work (bytes to read) for scheduling and the
    progress bar, ``label`` a name to show."""

    key: Any
    size: int = 0
    label: str = ""


@runtime_checkable
class PartitionedSource(Source, Protocol):
    """A source whose threads fall into independent parts that can be read in parallel.

    ``ingest`` reads such a source with a pool of worker processes on large workspaces (one
    part per task, results written in part order, so the dataset is byte-identical to reading
    ``threads``). The contract, checked by :class:`~doppelkit.testing.contracts.SourceContract`:

    * ``threads(report)`` yields exactly ``partition_threads(p, report)`` for each ``p`` of
      ``partitions(report)``, in order, and records the same things in ``report``;
    * every thread of one channel is in one part, and a part reads nothing another part needs;
    * ``partition_threads`` works in a forked child process (reopen files there, never share a
      handle with the parent).
    """

    def partitions(self, report: DatasetReport) -> list[Partition]:
        """The parts, in order; records in ``report`` what ``threads`` records before its
        first thread (skipped files, folders that are not read)."""
        ...

    def partition_threads(self, partition: Partition, report: DatasetReport) -> Iterator[Thread]:
        """The threads of one part, in order, recording what it drops in ``report``."""
        ...


@dataclass
class Rendered:
    """A tokenised training example: ``labels`` is ``-100`` wherever loss is not taken."""

    input_ids: list[int]
    labels: list[int]


@runtime_checkable
class Formatter(Component, Protocol):
    """Turns threads into examples (training) and conversations into prompts (serving).

    The same code path serves both, so a persona sees in Slack exactly the prompt shape it
    was trained on.
    """

    def __init__(self, config: Any, context: RunContext) -> None: ...

    def examples(self, thread: Thread, persona: Persona, report: DatasetReport) -> Iterator[Example]:
        """Yield one example per qualifying persona reply in ``thread``."""
        ...

    def conversation(
        self, thread: Thread, persona: Persona, bot_user_id: str | None = None
    ) -> list[ChatMessage]:
        """Serving: the chat messages asking the persona to continue ``thread``.

        ``bot_user_id`` is the serving bot's own Slack user ID: mentions of it read as
        mentions of the persona, exactly as ``<@persona_id>`` does in training data.
        """
        ...

    def render(self, example: Example, tokenizer: Any) -> Rendered:
        """Training: token ids with the prompt masked out of ``labels``."""
        ...

    def render_prompt(self, messages: Sequence[ChatMessage], tokenizer: Any) -> str:
        """Serving: the exact prompt text to generate from (prefix of ``render``'s text)."""
        ...


@dataclass
class TrainJob:
    """Everything a trainer needs to produce one persona adapter."""

    persona: Persona
    dataset: Path
    eval_dataset: Path | None
    formatter: Formatter
    model: ModelConfig
    report: DatasetReport | None = None


@dataclass
class TrainResult:
    adapter_dir: Path
    version: str
    metrics: dict[str, Any] = field(default_factory=dict)
    # Where the adapter is when not under this machine's home (trained remotely, not copied
    # back), for people: e.g. "Modal Volume doppelkit-home, /adapters/T…/U…/v3".
    location: str | None = None


@runtime_checkable
class Trainer(Component, Protocol):
    """Fine-tunes a base model on a dataset and publishes a versioned adapter under home
    (:mod:`doppelkit.artifacts`), where every engine finds it."""

    def __init__(self, config: Any, context: RunContext) -> None: ...

    def train(self, job: TrainJob) -> TrainResult: ...


@runtime_checkable
class Engine(Component, Protocol):
    """Generates persona replies: one base model, many persona adapters.

    Serves what trainers published under ``context.home`` (:mod:`doppelkit.artifacts`). Each
    persona's prompt is built by the formatter its adapter was trained with (named in the
    manifest, built from ``context.registries``), the same code as training. ``close`` frees
    the model; an engine is also a context manager in spirit: call ``close`` when done.
    """

    def __init__(self, config: Any, context: RunContext) -> None: ...

    def current_version(self, team: str, user: str) -> str | None:
        """The published adapter version that would answer for this persona, or None."""
        ...

    def personas(self) -> list[AdapterManifest]:
        """The current manifest of every published persona this engine can serve."""
        ...

    def stream(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> Iterator[str]:
        """Text chunks of the persona's reply to ``thread``, as they are generated."""
        ...

    def reply(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> list[str]:
        """The whole reply, split into the separate messages the persona would post."""
        ...

    def close(self) -> None:
        """Free the model and stop any worker; waiting requests fail."""
        ...


@runtime_checkable
class Backend(Component, Protocol):
    """Decides *where* a step runs: in-process, in a fresh process, on a GPU host, remotely.

    ``run`` calls ``step(*args, **kwargs)`` somewhere and returns its result. Steps are
    module-level functions of plain, picklable data (:mod:`doppelkit.steps`), so any backend
    can ship them. ``device`` is where steps run (``"cpu"``, ``"cuda"``), or ``None`` when it
    is decided there (the step then takes CUDA if it finds it, else the CPU).
    """

    device: str | None

    def __init__(self, config: Any, context: RunContext) -> None: ...

    def run(self, step: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


@runtime_checkable
class Frontend(Component, Protocol):
    """Serves personas to people: a Slack bot, a terminal chat, …. ``serve`` blocks."""

    def __init__(self, config: Any, context: RunContext) -> None: ...

    def serve(self, engine: Engine) -> None: ...


# --- optional capabilities -------------------------------------------------------------------------


@runtime_checkable
class DetachingBackend(Backend, Protocol):
    """A backend that can also start a step and return at once, without its result.

    A frontend uses it for work that outlives a request: the Slack bot's ``/doppel train``
    acknowledges Slack while a step (ingest → train → report back) runs where the backend puts
    it. Without it, such work runs on a thread of the frontend's own process.
    """

    def spawn(self, step: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None: ...


class WebApp(Protocol):
    """An ASGI application that holds resources (a database, worker threads) until closed."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class WebFrontend(Frontend, Protocol):
    """A frontend that can also be hosted as a web application (a serverless endpoint) instead
    of running its own server in ``serve``.

    ``prepare()`` does what needs no network — imports, building what does not connect — so a
    host can snapshot the process after it; ``asgi_app(engine)`` then connects (database, APIs)
    and returns the application, answering the same requests ``serve`` would.
    """

    def prepare(self) -> None: ...

    def asgi_app(self, engine: Engine) -> WebApp: ...
