"""Safe, low-level reading of a Slack workspace export (a ``.zip`` or an unzipped directory).

This module is the one place that touches export files. It knows the export *layout*
(``users.json``, ``channels.json``, ``groups.json``, one folder of ``YYYY-MM-DD.json`` day files
per conversation) but nothing about threads, personas or datasets: the ``slack_export`` source
(:mod:`doppelkit_slack.sources.export`) and the fake Slack server
(:mod:`doppelkit_slack.testing.fake_workspace`) both build on it. Public API, kept stable::

    with open_export("export.zip") as export:
        export.team_id()                      # most common users.json team_id, or None
        export.users()                        # raw users.json records (dicts)
        for channel in export.channels():     # public channels (channels.json)
            raw = export.channel_messages(channel, on_skip=lambda path, why: ...)

Safety rules (a zip is never extracted to disk; members are read into memory one at a time):

* a zip member with an absolute name, a ``..`` component or a symlink mode is refused
  (:class:`~doppelkit.errors.InputDataError`) before anything is read;
* the sum of declared uncompressed sizes is capped (``max_uncompressed_bytes``) and so is the
  number of bytes actually inflated while reading, so a member lying about its size is caught;
* one file larger than ``max_file_bytes`` is skipped, never loaded;
* ``dms.json``/``mpims.json`` and their folders are never opened by this module, and
  ``groups.json`` (private channels) only when asked with ``include_private=True``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import orjson

from doppelkit.errors import InputDataError
from doppelkit_slack.messages import without_lone_surrogates

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_UNCOMPRESSED_BYTES",
    "GROUPS_FILE",
    "Channel",
    "ExportFileError",
    "SkipCallback",
    "SlackExport",
    "is_day_file",
    "is_dm_folder",
    "is_document_folder",
    "open_export",
]

DEFAULT_MAX_UNCOMPRESSED_BYTES = 8 * 1024**3
DEFAULT_MAX_FILE_BYTES = 256 * 1024**2

USERS_FILE = "users.json"
ORG_USERS_FILE = "org_users.json"  # an Enterprise Grid export's members, instead of users.json
CHANNELS_FILE = "channels.json"
GROUPS_FILE = "groups.json"
# Listed only so they are recognised; this module never opens them.
NEVER_READ_FILES = frozenset({"dms.json", "mpims.json"})

# Documents newer exports hold besides conversations (canvases — huddle notes are canvases
# too — and lists): not chat, never read, named in the report.
DOCUMENT_FILES = {
    "canvases.json": "canvases (documents, not chat): not read",
    "lists.json": "lists (documents, not chat): not read",
}
CHANNEL_CANVAS = "canvas_in_the_conversation.json"
# A canvas's or a list's own folder: its file ID (F…), sometimes with ":" and its title.
DOCUMENT_FOLDER = re.compile(r"^F[A-Z0-9]{6,}(:.*)?$")

DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")
# Folder names Slack gives direct messages (``D…`` conversation IDs) and group DMs.
DM_FOLDER = re.compile(r"^(D[A-Z0-9]{6,}|mpdm-.+)$")
# Noise that archivers add and that is never part of an export.
JUNK = re.compile(r"(^|/)(__MACOSX|\.DS_Store|Thumbs\.db)(/|$)")

SkipCallback = Callable[[str, str], None]
"""``on_skip(path, reason)``: called for a file that is skipped (corrupt, too large, …)."""


class ExportFileError(InputDataError):
    """One file of the export cannot be used (unreadable, not UTF-8 JSON, too large, …)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self) -> tuple[type[ExportFileError], tuple[str, str]]:
        return ExportFileError, (self.path, self.reason)  # raised in ingest's worker processes too


def is_day_file(name: str) -> bool:
    """True for a conversation's ``YYYY-MM-DD.json`` day file name (the base name only)."""
    return bool(DAY_FILE.match(name))


def is_document_folder(name: str) -> bool:
    """True for a folder that holds a canvas or a list (named by its ``F…`` file ID)."""
    return bool(DOCUMENT_FOLDER.match(name))


def is_dm_folder(name: str) -> bool:
    """True for a folder named like a direct message (``D…``) or group DM (``mpdm-…``)."""
    return bool(DM_FOLDER.match(name))


@dataclass(frozen=True)
class Channel:
    """A conversation listed in ``channels.json`` (public) or ``groups.json`` (private).

    ``folder`` is the export folder holding its day files (``None`` if the export has none);
    ``raw`` is the record as exported (``is_archived``, ``topic``, ``members``, …).
    """

    id: str
    name: str
    private: bool
    folder: str | None
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)


class _Files(Protocol):
    """Read-only access to the files of an export, by POSIX path relative to its root."""

    label: str

    def names(self) -> list[str]: ...

    def read(self, name: str) -> bytes: ...

    def size(self, name: str) -> int: ...

    def close(self) -> None: ...


def _unsafe_member_reason(name: str) -> str | None:
    """Why a zip member name could escape an extraction directory (zip slip), or None."""
    if "\x00" in name:
        return "contains a NUL character"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "contains a '..' component"
    return None


def _utf8_name(info: zipfile.ZipInfo) -> str:
    """The member name as its creator wrote it. Zips without the UTF-8 flag are decoded as
    cp437 by zipfile; most such archivers really wrote UTF-8 (channel names can be non-ASCII)."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


class _ZipFiles:
    """A zip archive, checked for zip slip, symlinks and bombs before any member is read."""

    def __init__(self, path: Path, *, max_uncompressed_bytes: int, max_file_bytes: int) -> None:
        self.label = str(path)
        self.max_file_bytes = max_file_bytes
        self.max_uncompressed_bytes = max_uncompressed_bytes
        self._inflated = 0  # bytes actually decompressed so far, across all reads
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
            raise InputDataError(
                f"source.path={self.label!r} is not a readable zip archive ({exc}). "
                "Point source.path at the .zip Slack exported, or at its unzipped folder."
            ) from None
        try:
            self._members = self._check_members()
        except BaseException:
            self._zip.close()
            raise

    def _check_members(self) -> dict[str, zipfile.ZipInfo]:
        members: dict[str, zipfile.ZipInfo] = {}
        declared = 0
        for info in self._zip.infolist():
            reason = _unsafe_member_reason(info.filename)
            if reason is None and _is_symlink(info):
                reason = "is a symbolic link"
            if reason:
                raise InputDataError(
                    f"Refusing {self.label}: member {info.filename!r} {reason}. A Slack export never "
                    "contains such entries; re-download the export from Slack."
                )
            declared += info.file_size
            if declared > self.max_uncompressed_bytes:
                raise InputDataError(self._too_big_message("declares more than"))
            name = _utf8_name(info).replace("\\", "/")
            if not info.is_dir() and not JUNK.search(name):
                members[name] = info
        return members

    def _too_big_message(self, what: str) -> str:
        return (
            f"Refusing {self.label}: it {what} {self.max_uncompressed_bytes:,} bytes uncompressed "
            "(source.max_uncompressed_bytes), which looks like a zip bomb. If this is a genuine, very "
            "large export, unzip it and point source.path at the folder, or raise "
            "source.max_uncompressed_bytes."
        )

    def names(self) -> list[str]:
        return list(self._members)

    def read(self, name: str) -> bytes:
        info = self._members.get(name)
        if info is None:
            raise ExportFileError(name, "not in the archive")
        if info.file_size > self.max_file_bytes:
            raise ExportFileError(
                name, f"{info.file_size:,} bytes is over source.max_file_bytes={self.max_file_bytes:,}"
            )
        try:
            with self._zip.open(info) as fh:
                # Ask for one byte more than declared: getting it means the header lied.
                data = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise ExportFileError(name, f"corrupt zip member ({exc})") from None
        self._inflated += len(data)
        if self._inflated > self.max_uncompressed_bytes:
            raise InputDataError(self._too_big_message("inflates to more than"))
        if len(data) > info.file_size:
            raise InputDataError(
                f"Refusing {self.label}: member {name!r} inflates past its declared size "
                f"({info.file_size:,} bytes); the archive is corrupt or malicious."
            )
        return data

    def size(self, name: str) -> int:
        info = self._members.get(name)
        return info.file_size if info is not None else 0

    def close(self) -> None:
        self._zip.close()


class _DirectoryFiles:
    """An unzipped export. Symlinks that lead outside the export are ignored."""

    def __init__(self, root: Path, *, max_file_bytes: int) -> None:
        self.label = str(root)
        self.root = root
        self.max_file_bytes = max_file_bytes
        self.ignored: list[tuple[str, str]] = []
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        if self._names is None:
            self._names = self._walk()
        return self._names

    def _walk(self) -> list[str]:
        real_root = self.root.resolve()
        names: list[str] = []
        for folder, dirs, files in os.walk(self.root, onerror=None):
            dirs.sort()
            for file_name in sorted(files):
                path = Path(folder, file_name)
                rel = path.relative_to(self.root).as_posix()
                if JUNK.search(rel):
                    continue
                if path.is_symlink():
                    try:
                        path.resolve(strict=True).relative_to(real_root)
                    except (OSError, ValueError):
                        self.ignored.append((rel, "symbolic link leading outside the export; not read"))
                        continue
                names.append(rel)
        return names

    def read(self, name: str) -> bytes:
        path = self.root / name
        try:
            size = path.stat().st_size
            if size > self.max_file_bytes:
                raise ExportFileError(
                    name, f"{size:,} bytes is over source.max_file_bytes={self.max_file_bytes:,}"
                )
            with path.open("rb") as fh:
                # Size the read by the file, not the cap: read(n) allocates n bytes up front.
                data = fh.read(size + 1)
        except OSError as exc:
            raise ExportFileError(name, f"cannot read it ({exc.strerror or exc})") from None
        if len(data) > size:
            raise ExportFileError(name, "the file grew while being read")
        return data

    def size(self, name: str) -> int:
        try:
            return (self.root / name).stat().st_size
        except OSError:
            return 0

    def close(self) -> None:
        pass


def _find_root(names: list[str]) -> str:
    """The folder prefix holding ``channels.json``: ``""`` normally, ``"Name/"`` for a zip (or a
    folder) that wraps the export in one top-level folder, as re-zipping often does."""
    if CHANNELS_FILE in names or USERS_FILE in names or ORG_USERS_FILE in names:
        return ""
    wrapped = {n[: -len(CHANNELS_FILE)] for n in names if n.endswith("/" + CHANNELS_FILE)}
    wrapped |= {n[: -len(USERS_FILE)] for n in names if n.endswith("/" + USERS_FILE)}
    wrapped |= {n[: -len(ORG_USERS_FILE)] for n in names if n.endswith("/" + ORG_USERS_FILE)}
    top_level = sorted(p for p in wrapped if p.count("/") == 1)
    return top_level[0] if len(top_level) == 1 else ""


class SlackExport:
    """An opened Slack export. Use :func:`open_export` to get one; close it (or use ``with``).

    All paths below are POSIX paths relative to the export's root (``general/2024-01-02.json``).
    Reading a file that cannot be used raises :class:`ExportFileError` (a
    :class:`~doppelkit.errors.InputDataError`); :meth:`channel_messages` can skip such files
    through ``on_skip`` instead.
    """

    def __init__(self, files: _Files) -> None:
        self._files = files
        names = files.names()
        self._prefix = _find_root(names)
        self._folders: dict[str, list[str]] = {}
        self._top_files: set[str] = set()
        for full in names:
            if not full.startswith(self._prefix):
                continue
            rel = full[len(self._prefix) :]
            folder, _, base = rel.rpartition("/")
            if not folder:
                self._top_files.add(base)
            elif "/" not in folder:
                self._folders.setdefault(folder, []).append(base)
        for day_files in self._folders.values():
            day_files.sort()
        # Folder names as channels.json spells them: an export re-zipped on a Mac has its file
        # names decomposed (NFD) while the JSON has them composed (NFC). Matched in NFC.
        self._by_nfc: dict[str, str] = {}
        for folder in sorted(self._folders):
            self._by_nfc.setdefault(unicodedata.normalize("NFC", folder), folder)
        self._users: list[dict[str, Any]] | None = None

    # -- files ---------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """Where the export lives (for messages)."""
        return self._files.label

    @property
    def ignored(self) -> list[tuple[str, str]]:
        """``(path, reason)`` for files left out while listing (symlinks leaving a directory)."""
        return list(getattr(self._files, "ignored", []))

    def has(self, name: str) -> bool:
        """True if the export has the top-level file ``name`` (``users.json``, …)."""
        return name in self._top_files

    def folders(self) -> list[str]:
        """Every conversation folder in the export, sorted (listing only: nothing is read)."""
        return sorted(self._folders)

    def top_files(self) -> list[str]:
        """The export's top-level files (names), sorted."""
        return sorted(self._top_files)

    def other_files(self, folder: str) -> list[str]:
        """The files of ``folder`` that are not day files (paths): a channel's canvas, …"""
        return [f"{folder}/{base}" for base in self._folders.get(folder, []) if not is_day_file(base)]

    def folder_files(self, folder: str) -> list[str]:
        """The ``YYYY-MM-DD.json`` day files of ``folder`` (paths, oldest first)."""
        return [f"{folder}/{base}" for base in self._folders.get(folder, []) if is_day_file(base)]

    def read_bytes(self, name: str) -> bytes:
        """The raw bytes of one file (size-capped)."""
        return self._files.read(self._prefix + name)

    def file_size(self, name: str) -> int:
        """The size of one file in bytes (uncompressed; 0 if it cannot be told), without reading it."""
        return self._files.size(self._prefix + name)

    def read_json(self, name: str) -> Any:
        """One file parsed as UTF-8 JSON; :class:`ExportFileError` if it is not."""
        data = self.read_bytes(name)
        try:
            # orjson parses day files 2-3x faster than the standard library: parsing is most of
            # an ingest's time. Only on failure does json re-parse, for its precise message.
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        try:
            # orjson refuses what json takes: a lone UTF-16 surrogate escape (half an emoji cut
            # by Slack's truncation), which would then fail every UTF-8 write downstream.
            return without_lone_surrogates(json.loads(data))
        except UnicodeDecodeError as exc:
            raise ExportFileError(name, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except ValueError as exc:
            raise ExportFileError(name, f"not valid JSON ({exc})") from None

    def _read_list(self, name: str, what: str) -> list[dict[str, Any]]:
        if not self.has(name):
            raise InputDataError(
                f"{self.label} has no {name}, so it is not a Slack workspace export (expected "
                f"{USERS_FILE} — {ORG_USERS_FILE} in an Enterprise Grid export —, {CHANNELS_FILE} and one "
                "folder per channel). Point source.path at the export .zip or its unzipped folder."
            )
        try:
            data = self.read_json(name)
        except ExportFileError as exc:
            raise InputDataError(
                f"{self.label}: cannot read {name} ({exc.reason}); the export is damaged. "
                "Re-download it from Slack."
            ) from None
        if not isinstance(data, list):
            raise InputDataError(f"{self.label}: {name} should hold a JSON list of {what}.")
        return [item for item in data if isinstance(item, dict)]

    # -- workspace -----------------------------------------------------------------------

    def users(self) -> list[dict[str, Any]]:
        """The raw records of ``users.json`` — or, in an Enterprise Grid export, of
        ``org_users.json`` — (cached). Raises if neither is there, or it is corrupt."""
        if self._users is None:
            name = ORG_USERS_FILE if self.has(ORG_USERS_FILE) and not self.has(USERS_FILE) else USERS_FILE
            self._users = self._read_list(name, "users")
        return self._users

    def workspaces(self) -> dict[str, int]:
        """An Enterprise Grid export's workspaces (team IDs) → how many members each has, from
        the members' ``enterprise_user.teams``; empty for a plain workspace export."""
        counts: Counter[str] = Counter()
        for user in self.users():
            enterprise = user.get("enterprise_user")
            teams = enterprise.get("teams") if isinstance(enterprise, dict) else None
            if isinstance(teams, list):
                counts.update({t for t in teams if isinstance(t, str) and t})
        return dict(sorted(counts.items()))

    @staticmethod
    def member_workspaces(user: dict[str, Any]) -> set[str]:
        """The workspaces a (Grid) member record belongs to."""
        enterprise = user.get("enterprise_user")
        teams = enterprise.get("teams") if isinstance(enterprise, dict) else None
        return {t for t in teams or () if isinstance(t, str) and t}

    @staticmethod
    def channel_workspaces(channel: Channel) -> set[str]:
        """The workspaces a channel belongs to, as a Grid export records it (none: unknown)."""
        raw = channel.raw
        teams: set[str] = set()
        for key in ("context_team_id", "team_id", "team"):
            if isinstance(raw.get(key), str) and raw[key]:
                teams.add(raw[key])
        for key in ("internal_team_ids", "shared_team_ids"):
            teams.update(t for t in raw.get(key) or () if isinstance(t, str) and t)
        return teams

    def team_id(self) -> str | None:
        """The workspace's team ID: the most common ``team_id`` in ``users.json`` (guests from
        other teams in shared channels carry their own), or ``None`` when no record has one."""
        counts = Counter(
            u.get("team_id") or u.get("team") for u in self.users() if u.get("team_id") or u.get("team")
        )
        teams: Counter[str] = Counter({k: v for k, v in counts.items() if isinstance(k, str)})
        if not teams:
            return None
        return max(sorted(teams), key=lambda team: teams[team])

    def channels(self, *, include_private: bool = False) -> list[Channel]:
        """Public channels from ``channels.json`` (required), then private channels from
        ``groups.json`` when ``include_private`` (``groups.json`` is not opened otherwise).

        Sorted by name then ID, so every reader walks an export in the same order.
        """
        listed = [(raw, False) for raw in self._read_list(CHANNELS_FILE, "channels")]
        if include_private and self.has(GROUPS_FILE):
            listed += [(raw, True) for raw in self._read_list(GROUPS_FILE, "private channels")]
        out: dict[str, Channel] = {}
        for raw, private in listed:
            channel_id = raw.get("id")
            if not isinstance(channel_id, str) or not channel_id:
                continue
            raw_name = raw.get("name")
            name = raw_name if isinstance(raw_name, str) else ""
            folder = next((f for f in (name, channel_id) if f and f in self._folders), None)
            if folder is None:
                keys = (unicodedata.normalize("NFC", name), channel_id)
                folder = next((self._by_nfc[k] for k in keys if k in self._by_nfc), None)
            out.setdefault(channel_id, Channel(channel_id, name or channel_id, private, folder, raw))
        return sorted(out.values(), key=lambda c: (c.name, c.id))

    # -- messages ------------------------------------------------------------------------

    def day_files(self, channel: Channel) -> list[str]:
        """The day files of ``channel`` (paths, oldest first); empty if it has no folder."""
        return self.folder_files(channel.folder) if channel.folder else []

    def iter_day_files(
        self, channel: Channel, on_skip: SkipCallback | None = None
    ) -> Iterator[tuple[str, list[Any]]]:
        """``(path, messages)`` for each readable day file of ``channel``, oldest first.

        A file that is unreadable, not UTF-8, not JSON or not a JSON list is passed to
        ``on_skip(path, reason)`` and skipped; without ``on_skip`` it raises
        :class:`ExportFileError`.
        """
        for path in self.day_files(channel):
            try:
                data = self.read_json(path)
                if not isinstance(data, list):
                    raise ExportFileError(path, "not a JSON list of messages")
            except ExportFileError as exc:
                if on_skip is None:
                    raise
                on_skip(path, exc.reason)
                continue
            yield path, data

    def channel_messages(self, channel: Channel, on_skip: SkipCallback | None = None) -> list[dict[str, Any]]:
        """All raw message records of ``channel`` from every day file, in file order (not sorted:
        a thread's replies often sit in later day files than its root). Non-dict entries are
        left out. See :meth:`iter_day_files` for ``on_skip``."""
        messages: list[dict[str, Any]] = []
        for _, data in self.iter_day_files(channel, on_skip):
            messages.extend(m for m in data if isinstance(m, dict))
        return messages

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        self._files.close()

    def __enter__(self) -> SlackExport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_export(
    path: str | os.PathLike[str],
    *,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> SlackExport:
    """Open a Slack export (``.zip`` file or unzipped directory) for reading.

    Raises :class:`~doppelkit.errors.InputDataError` with an actionable message when the path
    is missing or unreadable, or when a zip is unsafe (zip slip, symlinks, bomb). Nothing is
    extracted to disk. ``users.json``/``channels.json`` are checked when first read.
    """
    target = Path(path).expanduser()
    try:
        is_dir = target.is_dir()
        is_file = not is_dir and target.is_file()
    except OSError as exc:
        raise InputDataError(f"source.path={str(target)!r} cannot be accessed: {exc}") from None
    if is_dir:
        if not os.access(target, os.R_OK | os.X_OK):
            raise InputDataError(f"source.path={str(target)!r} is a folder you have no permission to read.")
        return SlackExport(_DirectoryFiles(target, max_file_bytes=max_file_bytes))
    if is_file:
        if not os.access(target, os.R_OK):
            raise InputDataError(f"source.path={str(target)!r} is a file you have no permission to read.")
        return SlackExport(
            _ZipFiles(target, max_uncompressed_bytes=max_uncompressed_bytes, max_file_bytes=max_file_bytes)
        )
    raise InputDataError(
        f"source.path={str(target)!r} does not exist. Point it at a Slack export .zip (Workspace "
        "settings → Import/Export data → Export) or at its unzipped folder."
    )
