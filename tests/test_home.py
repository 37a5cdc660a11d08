from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from doppelkit.home import Home, atomic_dir, atomic_write
from doppelkit.models import validate_safe_id


def test_atomic_write_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("previous\n")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half a line")
        raise RuntimeError("boom")
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_atomic_write_replaces(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out.txt"
    with atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new"


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_dir_publishes_a_complete_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "deep" / "v1"
    synced: list[str] = []
    real_fsync = os.fsync
    proc_fds = Path("/proc/self/fd").is_dir()  # Linux: we can see which file each fsync flushes

    def fsync(fd: int) -> None:
        if proc_fds:
            synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    seen: list[Path] = []
    with atomic_dir(target, before_rename=lambda: seen.append(target)) as staging:
        assert staging.parent == target.parent and staging.name.startswith(".v1.") and staging.is_dir()
        assert not target.exists()
        (staging / "a.txt").write_text("a")
        (staging / "sub").mkdir()
        (staging / "sub" / "b.bin").write_bytes(b"b")
    assert seen == [target], "the hook runs once, before the rename"
    assert (target / "a.txt").read_text() == "a" and (target / "sub" / "b.bin").read_bytes() == b"b"
    assert _names(target.parent) == ["v1"], "no staging left behind"
    if proc_fds:  # every file, every directory, and the parent after the rename
        assert {"a.txt", "b.bin", "sub", staging.name, "deep"} <= set(synced)


def test_atomic_dir_failure_leaves_nothing_and_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "v1"
    with pytest.raises(RuntimeError), atomic_dir(target) as staging:
        (staging / "half").write_text("x")
        raise RuntimeError("boom")
    assert _names(tmp_path) == []

    target.mkdir()
    (target / "old").write_text("old")
    for replace in (False, True):
        with pytest.raises(RuntimeError), atomic_dir(target, replace=replace) as staging:
            (staging / "new").write_text("new")
            raise RuntimeError("boom")
        assert _names(tmp_path) == ["v1"] and _names(target) == ["old"]


def test_atomic_dir_hook_failure_leaves_nothing(tmp_path: Path) -> None:
    def hook() -> None:
        raise RuntimeError("killed between steps")

    with (
        pytest.raises(RuntimeError),
        atomic_dir(tmp_path / "v1", prefix=".staging-", before_rename=hook) as staging,
    ):
        assert staging.name.startswith(".staging-")
        (staging / "f").write_text("x")
    assert _names(tmp_path) == []


@pytest.mark.parametrize("empty", [True, False])
def test_atomic_dir_refuses_an_existing_target_by_default(tmp_path: Path, empty: bool) -> None:
    target = tmp_path / "v1"
    target.mkdir()
    if not empty:
        (target / "old").write_text("old")
    with pytest.raises(FileExistsError), atomic_dir(target) as staging:
        (staging / "new").write_text("new")
    assert _names(tmp_path) == ["v1"]
    assert _names(target) == ([] if empty else ["old"])


def test_atomic_dir_reports_a_target_that_appears_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "key"
    with pytest.raises(FileExistsError), atomic_dir(target) as staging:  # a concurrent build won
        (staging / "ours").write_text("ours")
        target.mkdir()
        (target / "theirs").write_text("theirs")
    assert _names(tmp_path) == ["key"] and _names(target) == ["theirs"]


def test_atomic_dir_replace_swaps_in_the_new_tree(tmp_path: Path) -> None:
    target = tmp_path / "step-0000005"
    target.mkdir()
    (target / "old").write_text("old")
    with atomic_dir(target, replace=True) as staging:
        (staging / "new").write_text("new")
        assert _names(target) == ["old"], "the old copy stays in place while the new one is written"
    assert _names(tmp_path) == ["step-0000005"], "neither staging nor the old copy is left"
    assert _names(target) == ["new"]
    with atomic_dir(tmp_path / "fresh", replace=True) as staging:  # nothing to replace is fine too
        (staging / "f").write_text("f")
    assert _names(tmp_path / "fresh") == ["f"]


def test_atomic_dir_replace_puts_the_old_copy_back_if_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "step-0000005"
    target.mkdir()
    (target / "old").write_text("old")
    real_rename = os.rename

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if (
            Path(src).name.startswith(".step-0000005.")
            and Path(dst) == target
            and "old-" not in Path(src).name
        ):
            raise OSError(errno.EIO, "simulated I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="simulated"), atomic_dir(target, replace=True) as staging:
        (staging / "new").write_text("new")
    assert _names(tmp_path) == ["step-0000005"] and _names(target) == ["old"]


@pytest.mark.parametrize("bad", ["..", ".", "../x", "a/b", "", "-x", "x" * 65, "U1\n", "/etc"])
def test_unsafe_ids_are_rejected(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        validate_safe_id(bad)
    with pytest.raises(ValueError):
        Home.at(tmp_path).adapters("T1", bad)


def test_layout_is_by_ids(tmp_path: Path) -> None:
    home = Home.at(tmp_path)
    assert home.datasets("T1", "U2") == tmp_path.resolve() / "datasets" / "T1" / "U2"
    assert home.contains(home.adapters("T1", "U2"))
    assert not home.contains(tmp_path.parent)
