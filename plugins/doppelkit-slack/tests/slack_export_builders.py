"""Builders for small hand-made Slack exports used by the export-source tests."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

TEAM = "T0TEST0001"


def user(user_id: str, name: str, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": user_id,
        "team_id": TEAM,
        "name": name,
        "real_name": name.title(),
        "profile": {"display_name": name, "real_name": name.title()},
    }
    record.update(extra)
    return record


def message(ts: str, user_id: str | None, text: str, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "message", "ts": ts, "text": text}
    if user_id is not None:
        record["user"] = user_id
    record.update(extra)
    return record


def channel(channel_id: str, name: str) -> dict[str, Any]:
    return {"id": channel_id, "name": name, "is_archived": False, "members": []}


USERS = [user("U1ANN", "ann"), user("U2BOB", "bob"), user("U3BOT", "helperbot", is_bot=True)]


def write_export(
    root: Path,
    days: dict[str, list[Any] | str | bytes],
    *,
    users: list[dict[str, Any]] | None = None,
    channels: list[dict[str, Any]] | None = None,
    top: dict[str, Any] | None = None,
) -> Path:
    """Write an export: ``days`` maps ``folder/YYYY-MM-DD.json`` to messages (or raw text/bytes);
    ``top`` adds or replaces top-level files (a value of ``None`` leaves the file out)."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {
        "users.json": USERS if users is None else users,
        "channels.json": [channel("C1GEN", "general")] if channels is None else channels,
    }
    files.update(top or {})
    for name, data in files.items():
        if data is not None:
            (root / name).write_text(json.dumps(data), encoding="utf-8")
    for name, data in days.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        elif isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_text(json.dumps(data), encoding="utf-8")
    return root


def zip_dir(source: Path, target: Path, prefix: str = "") -> Path:
    """Zip an export directory the way Slack ships it (``prefix`` wraps it in a folder)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(source).as_posix())
    return target
