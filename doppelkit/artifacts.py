"""Published persona adapters: versioned, crash-safe, plain PEFT directories.

Layout under ``home.adapters(team, user)`` (owned by the core: trainers write it through
:func:`publish`, engines read it, ``forget_person`` deletes it)::

    v1/ v2/ …                 one directory per published version, never modified afterwards
      adapter_config.json     }  exactly what ``PeftModel.from_pretrained(base, path)`` needs,
      adapter_model.safetensors } safetensors only (never pickle)
      manifest.json           AdapterManifest: base model, formatter, hashes, metrics, …
    CURRENT                   the served version's name ("v2"), replaced atomically

Publishing writes a hidden staging directory, fsyncs every file and the directory, renames it
to ``vN`` (atomic on POSIX), fsyncs the parent (all of that is :func:`doppelkit.home.atomic_dir`),
and only then replaces ``CURRENT``. A crash at
any point leaves ``CURRENT`` naming the previous complete version; a staging directory left by
a crash is invisible to readers and removed by the next publish. Publishers of one persona
serialise on a lock file, so two runs never claim the same version number.

This module is the contract between trainers and engines, whichever plugins they come from: a
trainer publishes here, an engine reads ``current_version`` to know what to load (and, through
the manifest, which base model and formatter), ``published_personas`` lists what can be served.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppelkit.errors import AmbiguousPersonaError, PersonaError, UserError
from doppelkit.faults import crash_point
from doppelkit.home import Home, atomic_dir, atomic_write
from doppelkit.models import AdapterManifest, Persona, PersonaSelector, User
from doppelkit.persona import select_persona

POINTER = "CURRENT"
MANIFEST = "manifest.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
VERSION = re.compile(r"^v([1-9][0-9]*)$")
STAGING_PREFIX = ".staging-"
LOCK = ".lock"


class ArtifactError(UserError):
    """A published adapter is missing or malformed (its files, pointer or manifest)."""


class UnsafeAdapterError(UserError):
    """An adapter that could only be loaded unsafely: pickle weights, or files outside home."""


@dataclass(frozen=True)
class PublishedAdapter:
    version: str  # "v3"
    path: Path  # the version directory: pass it to PeftModel.from_pretrained
    manifest: AdapterManifest

    @property
    def number(self) -> int:
        return version_number(self.version)


def version_number(version: str) -> int:
    match = VERSION.match(version)
    if not match:
        raise ArtifactError(f"{version!r} is not an adapter version name (v1, v2, …)")
    return int(match.group(1))


def read_version(path: Path) -> PublishedAdapter:
    """Load one version directory, checking it is complete and pickle-free."""
    version = path.name
    version_number(version)
    missing = [name for name in (*ADAPTER_FILES, MANIFEST) if not (path / name).is_file()]
    if missing:
        raise ArtifactError(f"adapter {path} is incomplete: {', '.join(missing)} missing")
    try:
        manifest = AdapterManifest.model_validate_json((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {path / MANIFEST}: {exc}") from None
    if manifest.version != version:
        raise ArtifactError(f"{path / MANIFEST} says {manifest.version}, but the directory is {version}")
    return PublishedAdapter(version, path, manifest)


def list_versions(home: Home, team: str, user: str) -> list[PublishedAdapter]:
    """Every complete published version, oldest first (staging leftovers are ignored)."""
    root = home.adapters(team, user)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        if entry.is_dir() and VERSION.match(entry.name):
            with contextlib.suppress(ArtifactError):
                found.append(read_version(entry))
    return sorted(found, key=lambda adapter: adapter.number)


def current_version(home: Home, team: str, user: str) -> PublishedAdapter | None:
    """The version ``CURRENT`` names, or ``None`` when nothing was published yet."""
    root = home.adapters(team, user)
    pointer = root / POINTER
    try:
        version = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ArtifactError(f"cannot read {pointer}: {exc}") from None
    if not VERSION.match(version):
        raise ArtifactError(f"{pointer} holds {version!r}, not a version name")
    return read_version(root / version)


@contextlib.contextmanager
def _publish_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK).open("a") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; a single publisher is assumed
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def publish(
    home: Home,
    team: str,
    user: str,
    write_adapter: Callable[[Path], None],
    manifest: AdapterManifest,
) -> PublishedAdapter:
    """Publish a new version and make it current, atomically.

    ``write_adapter(directory)`` writes the PEFT files (e.g. ``model.save_pretrained(directory,
    safe_serialization=True)``); anything besides ``adapter_config.json`` and
    ``adapter_model.safetensors`` is removed (PEFT adds a README). ``manifest.version`` is set
    here, to the version claimed.
    """
    root = home.adapters(team, user)
    with _publish_lock(root):
        for leftover in root.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)  # from a publisher that crashed
        taken = [version_number(e.name) for e in root.iterdir() if e.is_dir() and VERSION.match(e.name)]
        version = f"v{max(taken, default=0) + 1}"
        # Fails (rather than replaces) should vN exist: under the lock it never does.
        with atomic_dir(
            root / version,
            prefix=f"{STAGING_PREFIX}{version}-",
            before_rename=lambda: crash_point("publish:staged"),
        ) as staging:
            write_adapter(staging)
            for item in staging.iterdir():
                if item.name not in ADAPTER_FILES:
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
            missing = [name for name in ADAPTER_FILES if not (staging / name).is_file()]
            if missing:
                raise ArtifactError(f"the adapter writer did not produce {', '.join(missing)}")
            stamped = manifest.model_copy(update={"version": version})
            (staging / MANIFEST).write_text(stamped.model_dump_json(indent=2) + "\n", encoding="utf-8")
        crash_point("publish:renamed")
        with atomic_write(root / POINTER) as fh:
            fh.write(version + "\n")
        crash_point("publish:pointer")
    return PublishedAdapter(version, root / version, stamped)


def published_personas(home: Home) -> list[AdapterManifest]:
    """The current manifest of every persona with a published adapter, by team then ID.

    Stray entries (unsafe names, broken or half-written versions) are skipped, never served.
    """
    root = home.root / "adapters"
    if not root.is_dir():
        return []
    found = []
    for team_dir in sorted(root.iterdir()):
        for user_dir in sorted(team_dir.iterdir()) if team_dir.is_dir() else []:
            with contextlib.suppress(ValueError, ArtifactError):
                published = current_version(home, team_dir.name, user_dir.name)
                if published is not None:
                    found.append(published.manifest)
    return found


def manifest_user(manifest: AdapterManifest) -> User:
    """The persona's user record (older manifests carry only the ID and display label)."""
    return manifest.persona_user or User(id=manifest.persona_id, display_name=manifest.persona_name)


def manifest_persona(manifest: AdapterManifest) -> Persona:
    return Persona(team=manifest.team, user=manifest_user(manifest))


def describe(manifest: AdapterManifest) -> str:
    name = manifest.persona_name or manifest.persona_id
    return f"{name} ({manifest.persona_id}, team {manifest.team}, {manifest.version})"


def find_published_persona(
    manifests: list[AdapterManifest], selector: PersonaSelector, home: Home
) -> Persona:
    """The persona ``selector`` names (ID, display name, real name or handle) among ``manifests``
    (an engine's ``personas()``), with errors that list the trained personas."""
    if not selector.user:
        listed = "; ".join(describe(m) for m in manifests) or "none yet"
        raise PersonaError(f"No persona chosen: set persona.user to one of the trained personas ({listed}).")
    query = selector.user.strip()
    if not manifests:
        raise PersonaError(
            f"No persona has been trained under {home.root} yet: run `doppelkit persona.user={query}` first."
        )
    in_team = [m for m in manifests if selector.team in (None, m.team)]
    if not in_team:
        listed = "; ".join(describe(m) for m in manifests)
        raise PersonaError(f"No persona is trained in team {selector.team}. Trained personas: {listed}.")
    try:
        team, user = select_persona(
            query, [(m.team, manifest_user(m)) for m in in_team], "among the trained personas"
        )
    except AmbiguousPersonaError:
        raise
    except PersonaError as exc:
        listed = "; ".join(describe(m) for m in manifests)
        raise PersonaError(
            f"No trained persona matches persona.user={query!r}. Trained personas: {listed}. "
            f"To train one: `doppelkit persona.user={query}`. ({exc})"
        ) from None
    return Persona(team=team, user=user)


# --- what engines read: the adapter's files, and the base it was trained on ---------------------

PICKLE_WEIGHTS = ("adapter_model.bin", "pytorch_model.bin", "adapter_model.pt")
TINY_BASE = "tiny"  # ``model=tiny``: a base built under home (``cache/tiny/<key>``), not a hub id


@dataclass(frozen=True)
class AdapterIdentity:
    """What tells two published adapters apart, beyond the version name.

    A persona's directory can be deleted and retrained, so ``v1`` may name different weights
    over time: the manifest's creation time and the weights file's size and mtime catch that
    without hashing megabytes on every request.
    """

    version: str
    created: str
    weights_size: int
    weights_mtime_ns: int


@dataclass(frozen=True)
class AdapterFiles:
    published: PublishedAdapter
    config_path: Path
    weights_path: Path
    identity: AdapterIdentity


def checked_files(home: Home, published: PublishedAdapter) -> AdapterFiles:
    """The adapter's two files, refusing pickle-only adapters and anything outside ``home``.

    Every engine checks here before its library sees the directory: PEFT and vLLM both fall back
    to a pickled ``adapter_model.bin`` (run by ``torch.load``) when the safetensors file is
    missing.
    """
    directory = published.path
    if not home.contains(directory):
        raise UnsafeAdapterError(
            f"refusing to load the adapter at {directory}: it resolves outside home ({home.root})"
        )
    weights = directory / ADAPTER_WEIGHTS
    config = directory / ADAPTER_CONFIG
    if not weights.is_file():
        pickles = [name for name in PICKLE_WEIGHTS if (directory / name).exists()]
        found = f" (found {', '.join(pickles)}: pickle files are never loaded)" if pickles else ""
        raise UnsafeAdapterError(
            f"the adapter at {directory} has no {ADAPTER_WEIGHTS}{found}; "
            "retrain the persona to publish safetensors weights"
        )
    for path in (weights, config):
        if not home.contains(path):
            raise UnsafeAdapterError(f"refusing to load {path}: it resolves outside home ({home.root})")
    stat = weights.stat()
    identity = AdapterIdentity(
        version=published.version,
        created=published.manifest.created.isoformat(),
        weights_size=stat.st_size,
        weights_mtime_ns=stat.st_mtime_ns,
    )
    return AdapterFiles(published, config, weights, identity)


def base_location(hook: Any, home: Home, manifest: AdapterManifest) -> tuple[str, str | None]:
    """Where an engine loads this adapter's base from: ``(location, revision)``. The plugin
    that built the base says (the ``locate_base`` hook); otherwise it is the manifest's hub id
    or folder. Without a ``hook`` (a bare RunContext) the installed plugins are asked."""
    if hook is None:
        from doppelkit.plugins import get_plugin_manager

        hook = get_plugin_manager().hook
    located = hook.locate_base(
        base_model=manifest.base_model, model_revision=manifest.model_revision, home=home
    )
    return located if located is not None else (manifest.base_model, manifest.model_revision)
