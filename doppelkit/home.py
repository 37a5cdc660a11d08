"""The ``home`` directory: where datasets, adapters, caches and state live.

Every path doppelkit writes is derived here, from validated IDs, so nothing is ever written
outside ``home`` (user-chosen output paths such as ``dataset.path`` excepted) and a display
name can never become a path.

Layout::

    home/
      datasets/<team>/<user>/dataset.jsonl, dataset.eval.jsonl, dataset.report.json
      adapters/<team>/<user>/v1/ v2/ … CURRENT          (published persona adapters)
      state/                                            (scrape checkpoints, persona store)
      cache/                                            (tiny model, tokenizers, …)
        corpus/<team>/<sha256 prefix>.jsonl             (workspace text written by ingest)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from doppelkit.models import validate_safe_id


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


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Atomically write ``data`` as pretty JSON."""
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")
