from __future__ import annotations

from pathlib import Path

import pytest

from doppelkit.home import Home, atomic_write
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
