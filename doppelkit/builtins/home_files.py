"""The core's own files under home, forgotten through the same hooks as every plugin's:
datasets (with their held-out split and report), published adapters, the workspace corpus."""

from __future__ import annotations

from doppelkit.home import Home
from doppelkit.hookspecs import hookimpl


@hookimpl
def forget_person(team: str, user: str, home: Home) -> list[str]:
    removed = []
    if home.remove(home.datasets(team, user)):
        removed.append("dataset")
    if home.remove(home.adapters(team, user)):
        removed.append("adapters")
    return removed


@hookimpl
def forget_team(team: str, home: Home) -> list[str]:
    removed = []
    for what, path in (
        ("datasets", home.root / "datasets" / team),
        ("adapters", home.root / "adapters" / team),
        ("workspace corpus", home.corpus(team)),
    ):
        if home.remove(path):
            removed.append(what)
    return removed
