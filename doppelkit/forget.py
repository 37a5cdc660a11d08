"""Forgetting a person or a whole team: every plugin deletes what it wrote.

``/doppel forget``, a declined consent, an uninstall — and any future "forget me" — call these,
never a list of paths: each plugin answers the ``forget_person`` / ``forget_team`` hooks for
the files it owns (the core for datasets, adapters and the workspace corpus; a trainer for its
checkpoints and base models; the bot for its avatars; …). A plugin added later is forgotten
too, without anyone editing this module.
"""

from __future__ import annotations

from typing import Any

from doppelkit.artifacts import published_personas
from doppelkit.home import Home
from doppelkit.models import is_safe_id


def _flatten(results: list[list[str] | None]) -> list[str]:
    return list(dict.fromkeys(item for result in results if result for item in result))


def _hooks(hook: Any) -> Any:
    """The run's hook relay; outside a run (``None``), every installed plugin's."""
    if hook is not None:
        return hook
    from doppelkit.plugins import default_plugin_manager

    return default_plugin_manager().hook


def forget_person(hook: Any, home: Home, team: str, user: str) -> list[str]:
    """Delete everything under home derived from one person; the names of what went.

    ``hook``: the run's hook relay (``context.hook``); ``None`` asks every installed plugin."""
    if not (is_safe_id(team) and is_safe_id(user)):
        return []  # nothing is ever filed under a name that is not an ID
    return _flatten(_hooks(hook).forget_person(team=team, user=user, home=home))


def forget_team(hook: Any, home: Home, team: str) -> list[str]:
    """Delete everything under home about one team (workspace); the names of what went."""
    if not is_safe_id(team):
        return []
    return _flatten(_hooks(hook).forget_team(team=team, home=home))


def people_left(home: Home, team: str) -> bool:
    """True while anyone of the team still has a complete dataset or a published adapter."""
    if not is_safe_id(team):
        return False
    return bool(home.dataset_reports(team)) or any(m.team == team for m in published_personas(home))
