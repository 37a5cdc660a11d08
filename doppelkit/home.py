"""The ``home`` directory: where datasets, adapters, caches and state live.

Every path doppelkit writes is derived here, from validated IDs, so nothing is ever written
outside ``home`` (user-chosen output paths such as ``dataset.path`` excepted) and a display
name can never become a path.

The core owns this layout and lists what is in it (:meth:`Home.dataset_reports`,
:func:`doppelkit.artifacts.published_personas`); each plugin owns the files it keeps under
``state/`` and ``cache/`` and deletes them when asked (the ``forget_person`` and
``forget_team`` hooks)::

    home/
      datasets/<team>/<user>/dataset.jsonl, dataset.eval.jsonl, dataset.report.json
      adapters/<team>/<user>/v1/ v2/ … CURRENT          (published persona adapters)
      cache/corpus/<team>/<sha256 prefix>.jsonl         (workspace text written by ingest)
      state/…, cache/…                                  (plugins' own: checkpoints, scrape
                                                         journals, the persona store, the
                                                         tiny base model, avatars, …)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from doppelkit.models import DatasetReport, is_safe_id, validate_safe_id

REPORT_NAME = "dataset.report.json"  # written by ``ingest`` beside ``dataset.jsonl``, last


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> Home:
        return cls(Path(path).expanduser().resolve())

    def _under(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def persona_dir(self, area: str, team: str, user: str) -> Path:
        return self._under(area, validate_safe_id(team, "team"), validate_safe_id(user, "user"))

    def datasets(self, team: str, user: str) -> Path:
        return self.persona_dir("datasets", team, user)

    def adapters(self, team: str, user: str) -> Path:
        return self.persona_dir("adapters", team, user)

    @property
    def state(self) -> Path:
        return self._under("state")

    @property
    def cache(self) -> Path:
        return self._under("cache")

    def corpus(self, team: str) -> Path:
        """Where ``ingest`` writes the team's workspace corpus (:mod:`doppelkit.corpus`)."""
        return self._under("cache", "corpus", validate_safe_id(team, "team"))

    def contains(self, path: Path) -> bool:
        """True if ``path`` resolves inside home (symlinks followed)."""
        try:
            path.resolve().relative_to(self.root)
        except ValueError:
            return False
        return True

    def remove(self, path: Path) -> bool:
        """Delete ``path`` (file, tree or link) if it lies inside home; True if something went.

        A symlink is unlinked, never followed; a path resolving outside home is left alone.
        """
        if path.is_symlink():
            path.unlink()
            return True
        if not path.exists() or not self.contains(path):
            return False
        if path.is_dir():
            shutil.rmtree(path)  # unlinks links inside the tree without following them
        else:
            path.unlink()
        return True

    def dataset_reports(self, team: str | None = None) -> list[tuple[Path, DatasetReport]]:
        """Every complete dataset under home (its report written last, by ``ingest``), by path.

        A folder a failed ingest left, or a damaged report, is not a dataset.
        """
        root = self._under("datasets")
        if team is not None and not is_safe_id(team):
            return []  # nothing is ever filed under a name that is not an ID
        pattern = f"{team}/*/{REPORT_NAME}" if team else f"*/*/{REPORT_NAME}"
        found = []
        for path in sorted(root.glob(pattern)) if root.is_dir() else []:
            try:
                report = DatasetReport.model_validate_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if (path.parent.parent.name, path.parent.name) == (report.team, report.persona_id):
                found.append((path, report))
        return found


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (after rename) so the rename survives a power cut."""
    with contextlib.suppress(OSError):  # not supported on every platform/filesystem
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Write ``path`` all-or-nothing: a temp file in the same directory, fsync, rename.

    If the block raises, the temp file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_tree(directory: Path) -> None:
    """fsync every regular file under ``directory`` (recursively), then every directory in it,
    deepest first, ending with ``directory`` itself. Symlinks are not followed."""
    for parent, dirs, files in os.walk(directory, topdown=False):
        for name in files:
            path = Path(parent, name)
            if path.is_symlink():
                continue
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
        for name in dirs:
            if not Path(parent, name).is_symlink():
                fsync_dir(Path(parent, name))
    fsync_dir(directory)


@contextlib.contextmanager
def atomic_dir(
    target: str | os.PathLike[str],
    *,
    replace: bool = False,
    prefix: str | None = None,
    before_rename: Callable[[], None] | None = None,
) -> Iterator[Path]:
    """Publish a directory all-or-nothing: yield a fresh staging directory beside ``target``.

    The block fills the staging directory. On normal exit every file in it (recursively) and the
    directory itself are fsynced, ``before_rename()`` is called if given (a crash-test hook),
    the staging directory is renamed to ``target`` and the parent directory is fsynced. Readers
    therefore see either no ``target`` (or the previous one) or the complete new one.

    If the block (or any step) raises, the staging directory is removed and ``target`` is left
    as it was. A process killed mid-way leaves the staging directory behind: it is hidden — its
    name is ``prefix`` (default ``".<target name>."``) plus a random suffix — and it is up to the
    caller to ignore such leftovers and remove them later (e.g. by globbing ``prefix + "*"``).

    When ``target`` already exists:

    * ``replace=False`` (default): :class:`FileExistsError`; the staging directory is removed and
      ``target`` is untouched. Meant for names that must never be reused (versions ``vN``) and
      for content-addressed caches (catch the error: whoever finished first wins). The check is
      made just before the rename, and ``rename`` itself refuses a non-empty directory, so a
      concurrent publisher is detected; only a concurrently created *empty* directory could be
      replaced (POSIX has no portable no-replace rename for directories).
    * ``replace=True``: the old ``target`` is first renamed aside to a hidden
      ``".<target name>.old-<random>"`` beside it, the staging directory is renamed into place,
      the parent is fsynced and only then is the old copy deleted. There is never a moment where
      ``target`` is half-written; a crash between the two renames leaves ``target`` missing and
      the old copy under its hidden name (removed later like any leftover matching
      ``".<target name>."``). If renaming the new directory in fails, the old one is put back.
    """
    final = Path(target)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix if prefix is not None else f".{final.name}.", dir=parent))
    try:
        yield staging
        fsync_tree(staging)
        if before_rename is not None:
            before_rename()
        aside: Path | None = None
        if os.path.lexists(final):
            if not replace:
                raise FileExistsError(errno.EEXIST, "target already exists", str(final))
            aside = parent / f".{final.name}.old-{uuid.uuid4().hex[:12]}"
            os.rename(final, aside)
        try:
            os.rename(staging, final)
        except OSError as exc:
            if aside is not None:
                os.rename(aside, final)  # put the previous copy back
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and not isinstance(exc, FileExistsError):
                raise FileExistsError(errno.EEXIST, "target already exists", str(final)) from exc
            raise
        fsync_dir(parent)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Atomically write ``data`` as pretty JSON."""
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")
