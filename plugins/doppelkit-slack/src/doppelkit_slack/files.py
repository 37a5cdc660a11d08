"""Where this plugin keeps files under home, and forgetting them (pure paths: no Slack SDK).

* ``cache/avatars/<team>/<user>.png`` — the bot's cached (disguised) persona avatars;
* ``state/scrape/<team>/`` — an unfinished Web API scrape's journal (redacted raw messages),
  deleted when the scrape completes.

The persona store (``state/bolt.sqlite`` by default) holds per-team rows the bot deletes itself.
"""

from __future__ import annotations

from pathlib import Path

from doppelkit.home import Home
from doppelkit.hookspecs import hookimpl
from doppelkit.models import validate_safe_id


def avatars_dir(home: Home, team: str) -> Path:
    return home.cache / "avatars" / validate_safe_id(team, "team")


def avatar_path(home: Home, team: str, user_id: str) -> Path:
    return avatars_dir(home, team) / f"{validate_safe_id(user_id, 'user')}.png"


def scrape_dir(home: Home, team: str) -> Path:
    return home.state / "scrape" / validate_safe_id(team, "team")


@hookimpl
def forget_person(team: str, user: str, home: Home) -> list[str]:
    return ["cached avatar"] if home.remove(avatar_path(home, team, user)) else []


@hookimpl
def forget_team(team: str, home: Home) -> list[str]:
    removed = []
    if home.remove(scrape_dir(home, team)):
        removed.append("unfinished scrape")
    if home.remove(avatars_dir(home, team)):
        removed.append("avatars")
    return removed
