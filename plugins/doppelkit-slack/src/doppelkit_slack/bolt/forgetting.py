"""What forgetting a person (``/doppel forget``) or a whole workspace deletes under home.

Per person: the dataset, the published adapters, LoRA training checkpoints and the cached
avatar. Per workspace — kept while any persona of the team remains, because they are built
from *everyone's* public text and cannot be edited per person cheaply: the workspace corpus
``ingest`` writes (``cache/corpus/<team>/``), the tiny base models pretrained on it
(``cache/tiny/<key>/`` whose ``tiny.json`` names the team), an unfinished API scrape's raw
messages (``state/scrape/<team>/``) and the team's avatar cache. They go when the last persona
of the team is forgotten, and on uninstall / revocation of the bot token.

Every deletion stays under home and never follows a symlink: a link is unlinked, a path
resolving outside home is left alone.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from doppelkit.home import Home
from doppelkit.models import SAFE_ID
from doppelkit_slack.bolt.personas import avatar_path

log = logging.getLogger("doppelkit.bolt")
TINY_MARKER = "tiny.json"  # written by the lora plugin's tiny builder; read as plain JSON here


def remove_under_home(home: Home, path: Path) -> bool:
    """Delete ``path`` (file, tree or link) if it is inside home; True if something went."""
    if path.is_symlink():
        path.unlink()  # the link itself, never its target
        return True
    if not path.exists() or not home.contains(path):
        return False
    if path.is_dir():
        shutil.rmtree(path)  # rmtree unlinks links inside the tree without following them
    else:
        path.unlink()
    return True


def person_paths(home: Home, team: str, user_id: str) -> dict[str, Path]:
    """What is derived from one person, by the name a reply uses for it."""
    return {
        "dataset": home.datasets(team, user_id),
        "adapters": home.adapters(team, user_id),
        "training checkpoints": home.state / "checkpoints" / team / user_id,
        "cached avatar": avatar_path(home, team, user_id),
    }


def workspace_paths(home: Home, team: str) -> dict[str, Path]:
    """Team-wide data, shared by every persona of the team."""
    paths = {
        "workspace corpus": home.cache / "corpus" / team,
        "unfinished scrape": home.state / "scrape" / team,
        "avatars": home.cache / "avatars" / team,
    }
    for i, base in enumerate(tiny_bases(home, team)):
        paths[f"tiny base {i + 1}"] = base
    return paths


def tiny_bases(home: Home, team: str) -> list[Path]:
    """Tiny base models pretrained on this team's corpus."""
    root = home.cache / "tiny"
    if root.is_symlink() or not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        marker = folder / TINY_MARKER
        if folder.is_symlink() or marker.is_symlink() or not marker.is_file():
            continue
        try:
            built_for = json.loads(marker.read_text(encoding="utf-8")).get("team")
        except (OSError, ValueError, AttributeError):
            continue
        if built_for == team:
            found.append(folder)
    return found


def forget_person(home: Home, team: str, user_id: str) -> list[str]:
    """Delete everything under home derived from this person; the names of what went."""
    if not (SAFE_ID.fullmatch(team) and SAFE_ID.fullmatch(user_id)):
        return []
    return [what for what, path in person_paths(home, team, user_id).items() if remove_under_home(home, path)]


def forget_workspace_data(home: Home, team: str) -> list[str]:
    """Delete the team-wide data (call once no persona of the team is left)."""
    if not SAFE_ID.fullmatch(team):
        return []
    removed = [what for what, path in workspace_paths(home, team).items() if remove_under_home(home, path)]
    return list(dict.fromkeys("tiny base" if what.startswith("tiny base") else what for what in removed))


def people_left(home: Home, team: str) -> bool:
    """True if any persona of the team still has a dataset or adapters under home."""
    for area in ("datasets", "adapters"):
        folder = home.root / area / team
        if folder.is_dir() and not folder.is_symlink() and any(p.is_dir() for p in folder.iterdir()):
            return True
    return False
