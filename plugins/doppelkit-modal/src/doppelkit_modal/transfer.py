"""What crosses between this machine's ``home`` and the Volume's, and how.

Up, before training: the persona's scrubbed dataset, its held-out split, its report and the
team's workspace corpus (what ``model=tiny`` learns from) — never the raw export, which
ingest read on this machine. The report names its files by absolute path; the uploaded copy
names them where they are on the Volume. Everything goes in one batch, so the Volume holds the
old dataset or the new one, never half of it.

Down, with ``backend.download=true``: the published adapter, republished here through
:func:`doppelkit.artifacts.publish` (atomic, ``CURRENT`` moved last) under this home's next
version number — a local home may already have versions of its own, so ``v3`` on the Volume
can become ``v2`` here; the manifest says which. A tiny base the adapter needs comes along when
this home lacks it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from doppelkit import artifacts
from doppelkit.errors import UserError
from doppelkit.home import Home, atomic_dir
from doppelkit.models import AdapterManifest, DatasetReport
from doppelkit.pipeline import DatasetPaths
from doppelkit_modal.config import ModalConfig
from doppelkit_modal.sides import Launcher

TINY = "tiny"  # the lora trainer's locally built base: its manifest names it with its cache key


def _volume_path(config: ModalConfig, relative: str) -> str:
    return f"{config.mount_path}/{relative}"


def upload_plan(
    home: Home, paths: DatasetPaths, report: DatasetReport, config: ModalConfig
) -> list[tuple[bytes | Path, str]]:
    """(local file or content, path inside the Volume) for one persona's training data."""
    datasets = f"datasets/{report.team}/{report.persona_id}"
    home.datasets(report.team, report.persona_id)  # validates the IDs before they become paths
    plan: list[tuple[bytes | Path, str]] = [(paths.train, f"/{datasets}/dataset.jsonl")]
    remote = report.model_copy(
        update={"dataset_path": _volume_path(config, f"{datasets}/dataset.jsonl"), "eval_path": ""}
    )
    if report.eval_path and paths.eval.is_file():
        plan.append((paths.eval, f"/{datasets}/dataset.eval.jsonl"))
        remote.eval_path = _volume_path(config, f"{datasets}/dataset.eval.jsonl")
    if report.corpus_path:
        corpus = Path(report.corpus_path)
        if not corpus.is_file():
            raise UserError(
                f"the workspace corpus {corpus} named by the dataset report is gone; ingest again"
            )
        target = f"cache/corpus/{report.team}/{corpus.name}"
        plan.append((corpus, f"/{target}"))
        remote.corpus_path = _volume_path(config, target)
    # The report last in the list and written by the same batch: it marks a complete dataset.
    plan.append((remote.model_dump_json(indent=2).encode() + b"\n", f"/{datasets}/dataset.report.json"))
    return plan


@dataclass(frozen=True)
class Downloaded:
    version: str  # the local version it became
    remote_version: str
    adapter_dir: Path


def download_adapter(launcher: Launcher, home: Home, team: str, user: str, adapter_dir: str) -> Downloaded:
    """Copy a published adapter from the Volume into ``home`` (see module docstring)."""
    relative = PurePosixPath(adapter_dir)
    if relative.is_absolute() or ".." in relative.parts or relative.parts[:3] != ("adapters", team, user):
        raise UserError(f"unexpected adapter path from Modal: {adapter_dir!r}")
    with tempfile.TemporaryDirectory(
        prefix=".modal-download-", dir=home.root if home.root.is_dir() else None
    ) as tmp:
        staging = Path(tmp) / "adapter"
        launcher.download(str(relative), staging)
        remote = artifacts.read_version(_as_version_dir(staging, relative.name))
        manifest = remote.manifest
        _download_tiny_base(launcher, home, manifest)

        def write(directory: Path) -> None:
            for name in artifacts.ADAPTER_FILES:
                shutil.copy2(remote.path / name, directory / name)

        published = artifacts.publish(home, team, user, write, manifest)
    return Downloaded(published.version, manifest.version, published.path)


def _as_version_dir(staging: Path, version: str) -> Path:
    named = staging.parent / version
    staging.rename(named)
    return named


def _download_tiny_base(launcher: Launcher, home: Home, manifest: AdapterManifest) -> None:
    """The tiny base lives under ``home/cache/tiny/<key>`` (the lora trainer's cache): serving the
    adapter here needs the very base it was trained on."""
    key = manifest.model_revision
    if manifest.base_model != TINY or not key or "/" in key or key.startswith("."):
        return
    target = home.cache / "tiny" / key
    if target.is_dir():
        return
    try:
        with atomic_dir(target) as staging:
            launcher.download(f"cache/tiny/{key}", staging)
    except FileExistsError:
        pass  # built or copied meanwhile: the same content (its key is a hash of it)
