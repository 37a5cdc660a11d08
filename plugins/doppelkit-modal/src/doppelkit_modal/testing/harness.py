"""A local stand-in for Modal's servers (see :mod:`doppelkit_modal.testing`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from doppelkit.errors import UserError
from doppelkit_modal.app import BuiltApp
from doppelkit_modal.config import ModalConfig
from doppelkit_modal.credentials import MissingCredentialsError
from doppelkit_modal.remote_env import RUN_ENV
from doppelkit_modal.sides import EngineHandle, ObjEngineHandle, install_harness, missing_secrets_error
from doppelkit_modal.testing.introspect import exit_local

LOCAL_URL = "https://doppelkit--web-asgi.modal.invalid"


@contextlib.contextmanager
def _quiet_volume_warning() -> Iterator[None]:
    """``.local()`` warns that the body "will not have access to the mounted Volume": here the
    temporary directory *is* the Volume."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*mounted Volume.*", category=UserWarning)
        yield


@dataclass
class LocalModal:
    """Modal, played in this process. ``volume`` is the Volume's directory and the runs'
    ``backend.mount_path`` (pass :meth:`overrides` to the run)."""

    volume: Path
    credentials: bool = True  # False: the launcher refuses like a machine without a token
    missing_secrets: frozenset[str] = frozenset()
    uploads: list[str] = field(default_factory=list)  # paths inside the Volume
    downloads: list[str] = field(default_factory=list)
    commits: int = 0
    reloads: int = 0
    trained: list[tuple[str, str]] = field(default_factory=list)  # (team, user) per train call
    calls: list[str] = field(default_factory=list)  # what the launcher and the sides were asked
    deployed: BuiltApp | None = None
    built: list[BuiltApp] = field(default_factory=list)
    spawned: list[threading.Thread] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)  # raised by spawned jobs
    _engine: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.volume = self.volume.resolve()
        self.volume.mkdir(parents=True, exist_ok=True)

    def overrides(self) -> list[str]:
        """What a run under this stand-in adds to its overrides."""
        return ["+backend=modal", f"backend.mount_path={self.volume}"]

    # --- what the backend asks for ------------------------------------------------------------

    def launcher(self, config: ModalConfig) -> LocalLauncher:
        return LocalLauncher(self, config)

    def container_side(self, config: ModalConfig) -> LocalSide:
        return LocalSide(self, config)

    # --- helpers for tests ---------------------------------------------------------------------

    def record(self, what: str) -> None:
        with self._lock:
            self.calls.append(what)

    def deployment(self) -> BuiltApp:
        if self.deployed is None:
            raise UserError("the app is not deployed (LocalModal: run `serve` first)")
        return self.deployed

    def engine_object(self) -> Any:
        """The deployed ``Engine`` class's one instance (``@modal.enter`` runs on first use)."""
        with self._lock:
            if self._engine is None:
                self._engine = self.deployment().engine()
            return self._engine

    @contextlib.contextmanager
    def web_app(self) -> Iterator[Any]:
        """The deployed ``Web`` class's ASGI app, as ``Web().asgi.local()`` makes it (both
        ``@modal.enter`` phases run), closed afterwards as ``@modal.exit`` would."""
        web = self.deployment().web
        assert web is not None, "the deployed app has no web endpoint"
        obj = web()
        with _quiet_volume_warning():
            app = obj.asgi.local()
        try:
            yield app
        finally:
            exit_local(obj)

    def spawn(self, target: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                with _quiet_volume_warning():
                    target()
            except BaseException as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=run, name="local-modal-job", daemon=True)
        with self._lock:
            self.spawned.append(thread)
        thread.start()

    def join(self, timeout: float = 120.0) -> None:
        """Wait for every spawned job; re-raise the first error one of them raised."""
        for thread in list(self.spawned):
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError("a spawned job is still running")
        if self.errors:
            raise self.errors[0]


@dataclass
class LocalLauncher:
    modal: LocalModal
    config: ModalConfig

    def _path(self, inside: str) -> Path:
        relative = PurePosixPath("/", inside).relative_to("/")
        if ".." in relative.parts:
            raise ValueError(f"path outside the Volume: {inside}")
        return self.modal.volume.joinpath(*relative.parts)

    def check_credentials(self) -> None:
        self.modal.record("check_credentials")
        if not self.modal.credentials:
            raise MissingCredentialsError("Modal credentials not found (LocalModal)")

    def check_secrets(self, names: list[str]) -> None:
        self.modal.record("check_secrets")
        missing = sorted(set(names) & self.modal.missing_secrets)
        if missing:
            raise missing_secrets_error(missing, self.config)

    def upload(self, files: list[tuple[bytes | Path, str]]) -> None:
        self.modal.record("upload")
        for source, target in files:
            path = self._path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                path.write_bytes(source)
            else:
                shutil.copyfile(source, path)
            self.modal.uploads.append(target)

    def download(self, volume_dir: str, target: Path) -> None:
        self.modal.record("download")
        source = self._path(volume_dir)
        if not source.is_dir():
            raise UserError(f"nothing at {volume_dir} on the Volume")
        shutil.copytree(source, target, dirs_exist_ok=True)
        self.modal.downloads.append(volume_dir)

    def train(
        self, built: BuiltApp, run_data: dict[str, Any], team: str, user: str, device: str | None
    ) -> Any:
        self.modal.record("train")
        self.modal.built.append(built)
        self.modal.trained.append((team, user))
        with _quiet_volume_warning():
            return built.train.local(run_data, team, user, device)

    def call(self, built: BuiltApp, reference: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        self.modal.record(f"call {reference}")
        self.modal.built.append(built)
        with _quiet_volume_warning():
            return built.job.local(reference, args, kwargs)

    def spawn(self, reference: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.modal.record(f"spawn {reference}")
        job = self.modal.deployment().job
        self.modal.spawn(lambda: job.local(reference, args, kwargs))

    def deploy(self, built: BuiltApp) -> str | None:
        self.modal.record("deploy")
        self.modal.built.append(built)
        self.modal.deployed = built
        self.modal._engine = None
        os.environ[RUN_ENV] = str(built.env.get("engine", built.env.get("web", {}))[RUN_ENV])
        return LOCAL_URL if built.web is not None else None

    @contextlib.contextmanager
    def engine_session(self, built: BuiltApp) -> Iterator[EngineHandle]:
        self.modal.record("engine_session")
        self.modal.built.append(built)
        saved = os.environ.get(RUN_ENV)
        os.environ[RUN_ENV] = str(built.env["engine"][RUN_ENV])
        obj = built.engine()
        try:
            with _quiet_volume_warning():
                yield _QuietHandle(ObjEngineHandle(obj, local=True))
        finally:
            with contextlib.suppress(Exception):
                exit_local(obj)
            if saved is None:
                os.environ.pop(RUN_ENV, None)
            else:
                os.environ[RUN_ENV] = saved


@dataclass
class _QuietHandle:
    """Engine calls under ``.local()`` without the mounted-Volume warning."""

    handle: ObjEngineHandle

    def reply(self, persona: dict[str, Any], thread: dict[str, Any], bot_user_id: str | None) -> list[str]:
        with _quiet_volume_warning():
            return self.handle.reply(persona, thread, bot_user_id)

    def stream(
        self, persona: dict[str, Any], thread: dict[str, Any], bot_user_id: str | None
    ) -> Iterator[str]:
        with _quiet_volume_warning():
            chunks = list(self.handle.stream(persona, thread, bot_user_id))
        return iter(chunks)

    def personas(self) -> list[dict[str, Any]]:
        with _quiet_volume_warning():
            return self.handle.personas()

    def current_version(self, team: str, user: str) -> str | None:
        with _quiet_volume_warning():
            return self.handle.current_version(team, user)


@dataclass
class LocalSide:
    modal: LocalModal
    config: ModalConfig

    @property
    def home(self) -> Path:
        return Path(self.config.mount_path)

    def reload(self, force: bool = False) -> None:
        with self.modal._lock:
            self.modal.reloads += 1

    def commit(self) -> None:
        with self.modal._lock:
            self.modal.commits += 1

    def train(self, run_data: dict[str, Any], team: str, user: str, device: str | None) -> dict[str, Any]:
        self.modal.record("side.train")
        self.modal.trained.append((team, user))
        with _quiet_volume_warning():
            result: dict[str, Any] = self.modal.deployment().train.local(run_data, team, user, device)
        return result

    def spawn(self, reference: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.modal.record(f"side.spawn {reference}")
        job = self.modal.deployment().job
        self.modal.spawn(lambda: job.local(reference, args, kwargs))

    def engine(self) -> EngineHandle:
        return _QuietHandle(ObjEngineHandle(self.modal.engine_object(), local=True))


@contextlib.contextmanager
def local_modal(volume: Path, **options: Any) -> Iterator[LocalModal]:
    """Install a :class:`LocalModal` for the block (one at a time per process)."""
    harness = LocalModal(volume, **options)
    saved = os.environ.get(RUN_ENV)
    try:
        with install_harness(harness):
            yield harness
            harness.join()
    finally:
        if harness._engine is not None:
            with contextlib.suppress(Exception):
                exit_local(harness._engine)
        if saved is None:
            os.environ.pop(RUN_ENV, None)
        else:
            os.environ[RUN_ENV] = saved
