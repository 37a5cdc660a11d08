"""Bad input: each case is a clear InputDataError (or a skipped, reported file), never a
traceback, and nothing outside the export is touched."""

from __future__ import annotations

import os
import stat
import struct
import unicodedata
import zipfile
from pathlib import Path

import pytest
from slack_export_builders import USERS, channel, message, user, write_export, zip_dir

from doppelkit.errors import InputDataError
from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport, PersonaSelector, Thread
from doppelkit.persona import resolve_persona
from doppelkit_slack.sources.export import SlackExportSource
from doppelkit_slack.sources.reader import open_export


def source_for(path: Path, run_context: RunContext, **options: object) -> SlackExportSource:
    return SlackExportSource(SlackExportSource.Config(path=path, **options), run_context)


def read_all(source: SlackExportSource) -> tuple[list[Thread], DatasetReport]:
    report = DatasetReport()
    return list(source.threads(report)), report


def texts(threads: list[Thread]) -> set[str]:
    return {m.text for t in threads for m in t.messages}


@pytest.fixture
def good_export(tmp_path: Path) -> Path:
    return write_export(
        tmp_path / "export",
        {
            "general/2024-01-01.json": [message("1704100000.000100", "U1ANN", "hello from monday")],
            "general/2024-01-02.json": [message("1704200000.000100", "U2BOB", "hello from tuesday")],
        },
    )


# -- the path itself ------------------------------------------------------------------------


def test_missing_path(tmp_path: Path, run_context: RunContext) -> None:
    with pytest.raises(InputDataError, match="does not exist"):
        source_for(tmp_path / "nope.zip", run_context).workspace()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_path(good_export: Path, tmp_path: Path, run_context: RunContext) -> None:
    archive = zip_dir(good_export, tmp_path / "export.zip")
    for path in (archive, good_export):
        mode = path.stat().st_mode
        path.chmod(0)
        try:
            with pytest.raises(InputDataError, match="permission"):
                source_for(path, run_context).workspace()
        finally:
            path.chmod(mode)


def test_unreadable_path_even_as_root(
    good_export: Path, tmp_path: Path, run_context: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = zip_dir(good_export, tmp_path / "export.zip")
    monkeypatch.setattr("doppelkit_slack.sources.reader.os.access", lambda path, mode: False)
    for path in (archive, good_export):
        with pytest.raises(InputDataError, match="no permission to read"):
            source_for(path, run_context).workspace()


def test_not_a_zip(tmp_path: Path, run_context: RunContext) -> None:
    bogus = tmp_path / "export.zip"
    bogus.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(InputDataError, match="not a readable zip"):
        source_for(bogus, run_context).workspace()


# -- unsafe archives ------------------------------------------------------------------------


@pytest.mark.parametrize("evil", ["../escape.json", "/etc/passwd", "general/../../up.json", "C:/win.json"])
def test_zip_slip_is_refused(good_export: Path, tmp_path: Path, run_context: RunContext, evil: str) -> None:
    archive = zip_dir(good_export, tmp_path / "export.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(evil, "[]")
    with pytest.raises(InputDataError, match="Refusing") as excinfo:
        read_all(source_for(archive, run_context))
    assert evil in str(excinfo.value)
    assert not (tmp_path.parent / "escape.json").exists()


def test_symlink_member_is_refused(good_export: Path, tmp_path: Path, run_context: RunContext) -> None:
    archive = zip_dir(good_export, tmp_path / "export.zip")
    link = zipfile.ZipInfo("general/2024-01-03.json")
    link.create_system = 3  # unix
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(InputDataError, match="symbolic link"):
        source_for(archive, run_context).workspace()


def test_directory_symlink_leaving_the_export_is_not_followed(
    good_export: Path, tmp_path: Path, run_context: RunContext
) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('[{"ts": "1704300000.000100", "user": "U1ANN", "text": "outside secret"}]')
    (good_export / "general" / "2024-01-03.json").symlink_to(outside)
    threads, report = read_all(source_for(good_export, run_context))
    assert "outside secret" not in texts(threads)
    assert any("symbolic link" in s.reason for s in report.skipped_files)


def test_zip_bomb_declared_size_is_refused(
    good_export: Path, tmp_path: Path, run_context: RunContext
) -> None:
    archive = zip_dir(good_export, tmp_path / "export.zip")
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("random/2024-01-01.json", b"[" + b" " * 5_000_000 + b"]")
    assert archive.stat().st_size < 100_000  # tiny on disk, 5 MB inflated
    with pytest.raises(InputDataError, match="zip bomb"):
        source_for(archive, run_context, max_uncompressed_bytes=1_000_000).workspace()
    read_all(source_for(archive, run_context))  # the default cap allows it


def _lie_about_size(archive: Path, member: str, declared: int) -> None:
    """Rewrite the uncompressed size of ``member`` in both zip headers."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
    name = member.encode()
    struct.pack_into("<I", data, info.header_offset + 22, declared)  # local file header
    central = data.find(b"PK\x01\x02")
    while central != -1:  # the central directory entry naming the member
        (name_length,) = struct.unpack_from("<H", data, central + 28)
        if data[central + 46 : central + 46 + name_length] == name:
            struct.pack_into("<I", data, central + 24, declared)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    archive.write_bytes(bytes(data))


def test_zip_member_inflating_past_its_declared_size(
    good_export: Path, tmp_path: Path, run_context: RunContext
) -> None:
    day = good_export / "general" / "2024-01-01.json"
    day.write_text('[{"ts": "1704100000.000100", "user": "U1ANN", "text": "' + "x" * 50_000 + '"}]')
    archive = zip_dir(good_export, tmp_path / "export.zip")
    _lie_about_size(archive, "general/2024-01-01.json", 100)
    with open_export(archive) as export:
        assert export._files._members["general/2024-01-01.json"].file_size == 100  # type: ignore[attr-defined]
    threads, report = read_all(source_for(archive, run_context))
    # Never more than the declared bytes are inflated; the member fails its check and is skipped.
    assert [s.path for s in report.skipped_files] == ["general/2024-01-01.json"]
    assert texts(threads) == {"hello from tuesday"}


# -- missing or corrupt files ---------------------------------------------------------------


@pytest.mark.parametrize("missing", ["users.json", "channels.json"])
def test_missing_required_file(tmp_path: Path, run_context: RunContext, missing: str) -> None:
    export = write_export(tmp_path / "export", {}, top={missing: None})
    with pytest.raises(InputDataError, match=missing):
        read_all(source_for(export, run_context))
    with pytest.raises(InputDataError, match="not a Slack workspace export"):
        read_all(source_for(zip_dir(export, tmp_path / "export.zip"), run_context))


def test_corrupt_users_json(tmp_path: Path, run_context: RunContext) -> None:
    export = write_export(tmp_path / "export", {})
    (export / "users.json").write_text("[{broken", encoding="utf-8")
    with pytest.raises(InputDataError, match="users.json"):
        source_for(export, run_context).workspace()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[{not json", "not valid JSON"),
        ('[{"ts": "1704150000.000100", "user": "U1ANN", "text": "caf\xe9"}]'.encode("latin-1"), "not UTF-8"),
        ('{"ts": "1"}', "not a JSON list"),
    ],
)
def test_one_bad_day_file_is_skipped_and_reported(
    good_export: Path, run_context: RunContext, content: str | bytes, reason: str
) -> None:
    bad = good_export / "general" / "2024-01-15.json"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    for path in (good_export, zip_dir(good_export, good_export.parent / "export.zip")):
        threads, report = read_all(source_for(path, run_context))
        assert texts(threads) == {"hello from monday", "hello from tuesday"}
        assert [s.path for s in report.skipped_files] == ["general/2024-01-15.json"]
        assert reason in report.skipped_files[0].reason


def test_oversized_day_file_is_skipped(good_export: Path, run_context: RunContext) -> None:
    big = good_export / "general" / "2024-01-03.json"
    big.write_text('[{"ts": "1704300000.000100", "user": "U1ANN", "text": "' + "x" * 5000 + '"}]')
    threads, report = read_all(source_for(good_export, run_context, max_file_bytes=4000))
    assert texts(threads) == {"hello from monday", "hello from tuesday"}
    assert [s.path for s in report.skipped_files] == ["general/2024-01-03.json"]
    assert "max_file_bytes" in report.skipped_files[0].reason


def test_folder_not_listed_in_channels_json_is_ignored_and_reported(
    good_export: Path, run_context: RunContext
) -> None:
    stray = good_export / "mystery" / "2024-01-01.json"
    stray.parent.mkdir()
    stray.write_text('[{"ts": "1704100000.000200", "user": "U1ANN", "text": "stray text"}]')
    threads, report = read_all(source_for(good_export, run_context))
    assert "stray text" not in texts(threads)
    assert [(s.path, s.reason) for s in report.skipped_files] == [
        ("mystery/", "folder not listed in channels.json; ignored")
    ]


def test_channel_listed_without_a_folder_is_fine(tmp_path: Path, run_context: RunContext) -> None:
    export = write_export(
        tmp_path / "export",
        {"general/2024-01-01.json": [message("1704100000.000100", "U1ANN", "hi")]},
        channels=[{"id": "C1GEN", "name": "general"}, {"id": "C2EMPTY", "name": "quiet"}, {"name": "no-id"}],
    )
    threads, _ = read_all(source_for(export, run_context))
    assert [t.channel for t in threads] == ["C1GEN"]


def test_zip_without_utf8_flag_keeps_non_ascii_names(tmp_path: Path, run_context: RunContext) -> None:
    export = write_export(
        tmp_path / "export",
        {"café/2024-01-01.json": [message("1704100000.000100", "U1ANN", "bonjour")]},
        channels=[{"id": "C1CAFE", "name": "café"}],
    )
    archive = zip_dir(export, tmp_path / "export.zip")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        infos = [i for i in zf.infolist() if i.flag_bits & 0x800]
    assert infos
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # clear the UTF-8 flag
        at = data.find(signature)
        while at != -1:
            (flags,) = struct.unpack_from("<H", data, at + flag_offset)
            struct.pack_into("<H", data, at + flag_offset, flags & ~0x800)
            at = data.find(signature, at + 4)
    archive.write_bytes(bytes(data))
    threads, _ = read_all(source_for(archive, run_context))
    assert [(t.channel_name, t.messages[0].text) for t in threads] == [("café", "bonjour")]


# -- Unicode normalisation (issue 11, class 5) ------------------------------------------------


def test_a_channel_folder_in_another_unicode_form_is_read(tmp_path: Path, run_context: RunContext) -> None:
    """macOS writes file names decomposed (NFD); channels.json has them composed (NFC). The
    channel must be read, from a folder and from a re-zipped export, and nothing is lost silently."""
    nfc, nfd = unicodedata.normalize("NFC", "café-zürich"), unicodedata.normalize("NFD", "café-zürich")
    assert nfc != nfd
    export = write_export(
        tmp_path / "export",
        {
            f"{nfd}/2024-01-01.json": [message("1704100000.000100", "U1ANN", "bonjour from the café")],
            "general/2024-01-01.json": [message("1704100000.000200", "U1ANN", "hi")],
        },
        channels=[channel("C1GEN", "general"), channel("C2CAFE", nfc), channel("C3EMPTY", "quiet-room")],
        top={"groups.json": []},  # private channels exist: an unmatched folder would count as one
    )
    for path in (export, zip_dir(export, tmp_path / "export.zip")):
        report = DatasetReport()
        threads = list(source_for(path, run_context).threads(report))
        assert {(t.channel, t.channel_name) for t in threads} == {("C1GEN", "general"), ("C2CAFE", nfc)}
        assert "private_channel" not in report.drops
        # A listed channel without a folder (nothing exported) is said, not silently skipped.
        assert [(s.path, s.reason) for s in report.skipped_files] == [
            ("quiet-room/", "listed in channels.json, but the export has no folder for it (no messages)")
        ]


def test_a_persona_name_typed_in_another_unicode_form_is_found(
    tmp_path: Path, run_context: RunContext
) -> None:
    composed = unicodedata.normalize("NFC", "Zoë Ångström")
    export = write_export(
        tmp_path / "export",
        {"general/2024-01-01.json": [message("1704100000.000100", "U4ZOE", "hej")]},
        users=[*USERS, user("U4ZOE", "zoe", profile={"display_name": composed, "real_name": "Zoe A"})],
    )
    workspace = source_for(export, run_context).workspace()
    for typed in (unicodedata.normalize("NFD", composed), unicodedata.normalize("NFD", "zoë ångström")):
        assert typed != composed
        assert resolve_persona(PersonaSelector(user=typed), workspace).id == "U4ZOE"
