"""The two sides of a Modal run, and everything that talks to Modal's servers.

* The **launcher** is this machine's side (the CLI): it checks credentials, uploads a dataset
  to the Volume, runs the train function in an ephemeral app (its logs stream here), copies an
  adapter back, deploys the serving app, opens an ephemeral engine for ``doppelkit chat``.
* The **container side** is what a body running on Modal uses: reload and commit the Volume
  that holds ``home``, call the deployed train function, spawn the job function, reach the
  deployed engine class.

:class:`ModalLauncher` and :class:`ModalContainerSide` are the real ones. Tests install a
stand-in for both with :func:`doppelkit_modal.testing.local_modal` — a temporary directory as
the Volume and ``.local()`` calls of the very functions :func:`~doppelkit_modal.app.build_app`
decorates — which is the only reason :func:`install_harness` exists.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from doppelkit.errors import UserError
from doppelkit_modal.config import ModalConfig

if TYPE_CHECKING:
    from doppelkit_modal.app import BuiltApp

log = logging.getLogger("doppelkit.modal")


def backend_config(run_data: dict[str, Any]) -> ModalConfig:
    """The ``backend.*`` section of a run's plain data, validated."""
    section = dict(run_data.get("backend") or {})
    if section.pop("name", "modal") != "modal":
        raise UserError("this run's backend is not modal")
    return ModalConfig.model_validate(section)


# --- what both sides offer ------------------------------------------------------------------------


class EngineHandle(Protocol):
    """The engine class's methods, wherever it runs (deployed, ephemeral, or in this process)."""

    def reply(
        self, persona: dict[str, Any], thread: dict[str, Any], bot_user_id: str | None
    ) -> list[str]: ...

    def stream(
        self, persona: dict[str, Any], thread: dict[str, Any], bot_user_id: str | None
    ) -> Iterator[str]: ...

    def personas(self) -> list[dict[str, Any]]: ...

    def current_version(self, team: str, user: str) -> str | None: ...


@dataclass
class ObjEngineHandle:
    """An ``Engine`` object (``modal.Cls`` instance) called remotely, or locally under tests."""

    obj: Any
    local: bool = False

    def _call(self, method: str, *args: Any) -> Any:
        fn = getattr(self.obj, method)
        return fn.local(*args) if self.local else fn.remote(*args)

    def reply(self, persona: dict[str, Any], thread: dict[str, Any], bot_user_id: str | None) -> list[str]:
        return list(self._call("reply", persona, thread, bot_user_id))

    def stream(
        self, persona: dict[str, Any], thread: dict[str, Any], bot_user_id: str | None
    ) -> Iterator[str]:
        if self.local:
            return iter(self.obj.stream.local(persona, thread, bot_user_id))
        return iter(self.obj.stream.remote_gen(persona, thread, bot_user_id))

    def personas(self) -> list[dict[str, Any]]:
        return list(self._call("personas"))

    def current_version(self, team: str, user: str) -> str | None:
        version = self._call("current_version", team, user)
        return None if version is None else str(version)


class ContainerSide(Protocol):
    @property
    def home(self) -> Path:
        """Where the Volume is mounted: the run's ``home`` there."""
        ...

    def reload(self, force: bool = False) -> None:
        """See other containers' commits (at most every ``backend.reload_interval`` unless forced)."""
        ...

    def commit(self) -> None:
        """Make this container's writes visible to the others now."""
        ...

    def train(self, run_data: dict[str, Any], team: str, user: str, device: str | None) -> dict[str, Any]:
        """The deployed train function, waited for."""
        ...

    def spawn(self, reference: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        """The deployed job function, not waited for."""
        ...

    def engine(self) -> EngineHandle:
        """The deployed engine class."""
        ...


class Launcher(Protocol):
    def check_credentials(self) -> None: ...

    def check_secrets(self, names: list[str]) -> None: ...

    def upload(self, files: list[tuple[bytes | Path, str]]) -> None:
        """Put files on the Volume (local path or content → path inside the Volume), all at once."""
        ...

    def download(self, volume_dir: str, target: Path) -> None:
        """Copy a directory of the Volume into ``target`` (created)."""
        ...

    def train(
        self, built: BuiltApp, run_data: dict[str, Any], team: str, user: str, device: str | None
    ) -> Any:
        """Run the train function in an ephemeral app, its output streaming here."""
        ...

    def call(self, built: BuiltApp, reference: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run the job function in an ephemeral app and wait for its result."""
        ...

    def spawn(self, reference: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Start the deployed app's job function."""
        ...

    def deploy(self, built: BuiltApp) -> str | None:
        """Deploy the app; the web endpoint's URL (None without one)."""
        ...

    def engine_session(self, built: BuiltApp) -> contextlib.AbstractContextManager[EngineHandle]:
        """An ephemeral app's engine class, stopped when the block ends."""
        ...


# --- the harness (tests) ----------------------------------------------------------------------------


class Harness(Protocol):
    volume: Path

    def launcher(self, config: ModalConfig) -> Launcher: ...

    def container_side(self, config: ModalConfig) -> ContainerSide: ...


_harness: Harness | None = None
_harness_lock = threading.Lock()


@contextlib.contextmanager
def install_harness(harness: Harness) -> Iterator[Harness]:
    """Route every Modal call of this process to ``harness`` (see :mod:`doppelkit_modal.testing`)."""
    global _harness
    with _harness_lock:
        if _harness is not None:
            raise RuntimeError("a Modal test harness is already installed")
        _harness = harness
    try:
        yield harness
    finally:
        with _harness_lock:
            _harness = None


def current_harness() -> Harness | None:
    return _harness


def _is_local() -> bool:
    """Not in a Modal container (read from the environment: no modal import on the CLI path)."""
    from doppelkit_modal.credentials import inside_modal

    return not inside_modal()


def inside(config: ModalConfig, home: Path) -> bool:
    """Is this code running on Modal, with ``home`` on the Volume?

    In a Modal container, always. Under a test harness, when ``home`` is the harness's Volume
    directory (its ``backend.mount_path``). On a user's machine, never — and a local ``home``
    equal to ``backend.mount_path`` is refused, it would read as remote.
    """
    if not _is_local():
        return True
    at_volume = home.resolve() == Path(config.mount_path).resolve()
    if _harness is not None:
        return at_volume
    if at_volume:
        raise UserError(
            f"home={home} is backend.mount_path, the Volume's path inside Modal's containers; "
            "choose another local home (or another backend.mount_path)"
        )
    return False


def container_side(run_data: dict[str, Any]) -> ContainerSide:
    config = backend_config(run_data)
    if not _is_local():
        return ModalContainerSide(config)
    if _harness is None:
        raise RuntimeError(
            "Modal function bodies run locally only under doppelkit_modal.testing.local_modal() "
            "(a temporary directory standing in for the Volume)"
        )
    return _harness.container_side(config)


def launcher(config: ModalConfig) -> Launcher:
    return _harness.launcher(config) if _harness is not None else ModalLauncher(config)


# --- the real ones ---------------------------------------------------------------------------------


@dataclass
class ModalContainerSide:
    config: ModalConfig
    home: Path = field(init=False)
    _last_reload: float = field(default=float("-inf"), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.home = Path(self.config.mount_path)

    def _volume(self) -> Any:
        import modal

        return modal.Volume.from_name(self.config.volume, environment_name=self.config.environment)

    def reload(self, force: bool = False) -> None:
        with self._lock:
            if not force and time.monotonic() - self._last_reload < self.config.reload_interval:
                return
            try:
                self._volume().reload()
            except Exception as exc:  # files open on the Volume: keep the current view, try later
                log.warning("could not reload Volume %s (%s); trying again later", self.config.volume, exc)
                return
            self._last_reload = time.monotonic()

    def commit(self) -> None:
        self._volume().commit()

    def train(self, run_data: dict[str, Any], team: str, user: str, device: str | None) -> dict[str, Any]:
        import modal

        train = modal.Function.from_name(
            self.config.app_name, "train", environment_name=self.config.environment
        )
        result: dict[str, Any] = train.remote(run_data, team, user, device)
        return result

    def spawn(self, reference: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        import modal

        job = modal.Function.from_name(self.config.app_name, "job", environment_name=self.config.environment)
        job.spawn(reference, args, kwargs)

    def engine(self) -> EngineHandle:
        import modal

        cls = modal.Cls.from_name(self.config.app_name, "Engine", environment_name=self.config.environment)
        return ObjEngineHandle(cls())


class ModalLauncher:
    """This machine's side, through Modal's client (needs credentials and the network)."""

    def __init__(self, config: ModalConfig) -> None:
        self.config = config

    def check_credentials(self) -> None:
        from doppelkit_modal.credentials import require_credentials

        require_credentials()

    def check_secrets(self, names: list[str]) -> None:
        import modal
        from modal.exception import NotFoundError

        missing = []
        for name in names:
            try:
                modal.Secret.from_name(name, environment_name=self.config.environment).hydrate()
            except NotFoundError:
                missing.append(name)
        if missing:
            raise missing_secrets_error(missing, self.config)

    def _volume(self, create: bool = False) -> Any:
        import modal

        return modal.Volume.from_name(
            self.config.volume, environment_name=self.config.environment, create_if_missing=create
        )

    def upload(self, files: list[tuple[bytes | Path, str]]) -> None:
        import io

        volume = self._volume(create=True)
        with volume.batch_upload(force=True) as batch:
            for source, target in files:
                batch.put_file(io.BytesIO(source) if isinstance(source, bytes) else source, target)

    def download(self, volume_dir: str, target: Path) -> None:
        from modal.types import FileEntryType

        volume = self._volume()
        root = PurePosixPath("/", volume_dir)
        entries = [e for e in volume.listdir(str(root), recursive=True) if e.type == FileEntryType.FILE]
        if not entries:
            raise UserError(f"nothing at {root} on Modal Volume {self.config.volume}")
        for entry in entries:
            relative = PurePosixPath("/", entry.path).relative_to(root)
            if ".." in relative.parts:
                continue
            path = target.joinpath(*relative.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                for chunk in volume.read_file(entry.path):
                    out.write(chunk)

    def train(
        self, built: BuiltApp, run_data: dict[str, Any], team: str, user: str, device: str | None
    ) -> Any:
        import modal

        with modal.enable_output(), built.app.run(environment_name=self.config.environment):
            return built.train.remote(run_data, team, user, device)

    def call(self, built: BuiltApp, reference: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        import modal

        with modal.enable_output(), built.app.run(environment_name=self.config.environment):
            return built.job.remote(reference, args, kwargs)

    def spawn(self, reference: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        import modal
        from modal.exception import NotFoundError

        try:
            job = modal.Function.from_name(
                self.config.app_name, "job", environment_name=self.config.environment
            )
            job.spawn(reference, args, kwargs)
        except NotFoundError:
            raise UserError(
                f"the Modal app {self.config.app_name!r} is not deployed; "
                "deploy it with `doppelkit serve +backend=modal frontend=bolt`"
            ) from None

    def deploy(self, built: BuiltApp) -> str | None:
        import modal

        with modal.enable_output():
            built.app.deploy(name=self.config.app_name, environment_name=self.config.environment)
        if built.web is None:
            return None
        try:
            url = built.web().asgi.get_web_url()
        except Exception as exc:  # deployed all the same; modal printed the URL above
            log.warning("could not read the web endpoint's URL back (%s); see the deploy output", exc)
            return None
        return str(url) if url else None

    @contextlib.contextmanager
    def engine_session(self, built: BuiltApp) -> Iterator[EngineHandle]:
        with built.app.run(environment_name=self.config.environment):
            yield ObjEngineHandle(built.engine())


def missing_secrets_error(missing: list[str], config: ModalConfig) -> UserError:
    where = f" in Modal environment {config.environment}" if config.environment else ""
    return UserError(
        f"Modal Secret(s) {', '.join(missing)} not found{where}; create each with "
        f"`modal secret create NAME KEY=value …` ({secret_help(missing, config)})"
    )


def secret_help(names: list[str], config: ModalConfig) -> str:
    """What each named Secret is expected to hold."""
    parts = []
    for name in names:
        if name in config.web_secrets:
            parts.append(
                f"{name}: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and DOPPELKIT_STORE_URL=postgresql+psycopg://…"
            )
        else:
            parts.append(f"{name}: e.g. HF_TOKEN=hf_… for gated models")
    return "; ".join(parts)
