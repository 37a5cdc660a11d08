"""Plugins own their files: forgetting asks every plugin, and each removes only what it wrote."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from doppelkit import forget, hookimpl
from doppelkit.home import Home
from doppelkit.models import DatasetReport

TEAM, OTHER_TEAM = "T0TEAM", "T0ELSE"
ROOT = Path(__file__).resolve().parents[1]


class NotesPlugin:
    """A throwaway third-party plugin keeping its own files under home/state/notes."""

    @staticmethod
    def person_file(home: Home, team: str, user: str) -> Path:
        return home.state / "notes" / team / f"{user}.txt"

    @hookimpl
    def forget_person(self, team: str, user: str, home: Home) -> list[str]:
        return ["notes"] if home.remove(self.person_file(home, team, user)) else []

    @hookimpl
    def forget_team(self, team: str, home: Home) -> list[str]:
        return ["team notes"] if home.remove(home.state / "notes" / team) else []


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def dataset(home: Home, team: str, user: str) -> Path:
    report = DatasetReport(team=team, persona_id=user, persona_name=user)
    write(home.datasets(team, user) / "dataset.jsonl")
    return write(home.datasets(team, user) / "dataset.report.json", report.model_dump_json())


@pytest.fixture
def hook(doppelkit_pm: Any, register_plugin: Callable[..., Any]) -> Any:
    register_plugin(NotesPlugin(), name="notes")
    return doppelkit_pm.hook


def everything(home: Home) -> set[str]:
    return {str(p.relative_to(home.root)) for p in home.root.rglob("*") if p.is_file()}


def test_forgetting_a_person_asks_every_plugin_and_removes_nothing_else(
    hook: Any, doppelkit_home: Home
) -> None:
    home = doppelkit_home
    for user in ("U0MAYA", "U0ERIK"):
        dataset(home, TEAM, user)
        write(home.adapters(TEAM, user) / "v1" / "manifest.json")
        write(NotesPlugin.person_file(home, TEAM, user))
    dataset(home, OTHER_TEAM, "U0MAYA")
    write(NotesPlugin.person_file(home, OTHER_TEAM, "U0MAYA"))
    before = everything(home)

    removed = forget.forget_person(hook, home, TEAM, "U0MAYA")

    assert sorted(removed) == ["adapters", "dataset", "notes"]
    gone = before - everything(home)
    assert gone == {
        f"datasets/{TEAM}/U0MAYA/dataset.jsonl",
        f"datasets/{TEAM}/U0MAYA/dataset.report.json",
        f"adapters/{TEAM}/U0MAYA/v1/manifest.json",
        f"state/notes/{TEAM}/U0MAYA.txt",
    }
    assert forget.people_left(home, TEAM), "erik is still there"
    assert forget.forget_person(hook, home, TEAM, "U0MAYA") == [], "nothing twice"


def test_forgetting_a_team_removes_the_teams_files_only(hook: Any, doppelkit_home: Home) -> None:
    home = doppelkit_home
    dataset(home, TEAM, "U0MAYA")
    write(home.corpus(TEAM) / "abc.jsonl")
    write(NotesPlugin.person_file(home, TEAM, "U0MAYA"))
    kept = {dataset(home, OTHER_TEAM, "U0ERIK"), write(NotesPlugin.person_file(home, OTHER_TEAM, "U0ERIK"))}

    removed = forget.forget_team(hook, home, TEAM)

    assert sorted(removed) == ["datasets", "team notes", "workspace corpus"]
    assert not forget.people_left(home, TEAM)
    assert {str(p.relative_to(home.root)) for p in kept} <= everything(home)


@pytest.mark.parametrize("team, user", [("../..", "U0MAYA"), (TEAM, "../U0ERIK"), (TEAM, "a/b")])
def test_ids_that_are_not_ids_forget_nothing(hook: Any, doppelkit_home: Home, team: str, user: str) -> None:
    dataset(doppelkit_home, TEAM, "U0ERIK")
    before = everything(doppelkit_home)
    assert forget.forget_person(hook, doppelkit_home, team, user) == []
    assert forget.forget_team(hook, doppelkit_home, team if team != TEAM else "..") == []
    assert everything(doppelkit_home) == before


def test_a_symlink_is_removed_never_followed(hook: Any, doppelkit_home: Home, tmp_path: Path) -> None:
    outside = write(tmp_path / "outside" / "precious.txt")
    link = NotesPlugin.person_file(doppelkit_home, TEAM, "U0MAYA")
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    assert forget.forget_person(hook, doppelkit_home, TEAM, "U0MAYA") == ["notes"]
    assert outside.read_text() == "x"


def test_a_half_made_dataset_is_not_a_persona(doppelkit_home: Home) -> None:
    """A failed ingest's empty folder (no report) never counts as someone left to serve."""
    (doppelkit_home.datasets(TEAM, "U0MAYA")).mkdir(parents=True)
    write(doppelkit_home.datasets(TEAM, "U0ERIK") / "dataset.jsonl")
    assert doppelkit_home.dataset_reports(TEAM) == []
    assert not forget.people_left(doppelkit_home, TEAM)


# Paths each plugin owns; no other package may name them (they would delete or read them).
OWNED = {
    "doppelkit_lora": [r"""["']checkpoints["']""", r"""["']tiny["']\s*[,)]""", r"tiny\.json"],
    "doppelkit_slack": [r"""["']avatars["']""", r"""["']scrape["']"""],
}
PACKAGES = {
    "doppelkit": ROOT / "doppelkit",
    "doppelkit_lora": ROOT / "plugins" / "doppelkit-lora" / "src" / "doppelkit_lora",
    "doppelkit_slack": ROOT / "plugins" / "doppelkit-slack" / "src" / "doppelkit_slack",
}


@pytest.mark.parametrize("owner", sorted(OWNED))
def test_no_package_hard_codes_another_plugins_files(owner: str) -> None:
    offenders = []
    for package, folder in PACKAGES.items():
        if package == owner:
            continue
        for source in folder.rglob("*.py"):
            text = source.read_text(encoding="utf-8")
            offenders += [f"{source}: {p}" for p in OWNED[owner] if re.search(p, text)]
    assert offenders == []
