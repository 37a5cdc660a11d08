"""The persona's avatar: the person's picture with a "disguise" drawn on (Pillow), or not.

A bot posting as someone should be recognisable as a bot at a glance: the disguise (dark
glasses and a moustache) makes the persona's messages unmistakable while still hinting whose
voice it is. Disguised images are cached under ``home/cache/avatars/<team>/<user>.png`` and
served by the HTTP server at ``/avatars/<team>/<user>.png`` (``frontend.public_url`` tells
Slack where that is).
"""

from __future__ import annotations

import io
import logging
import urllib.request
from pathlib import Path

from doppelkit.home import Home, atomic_write
from doppelkit.models import Persona
from doppelkit_slack.bolt.personas import MemberDirectory
from doppelkit_slack.bolt.posting import Identity, bot_username
from doppelkit_slack.files import avatar_path

log = logging.getLogger("doppelkit.bolt")
AVATAR_SIZE = 192
FALLBACK_EMOJI = ":disguised_face:"
MAX_AVATAR_BYTES = 2_000_000


def disguise(image_bytes: bytes, size: int = AVATAR_SIZE) -> bytes:
    """A PNG of ``image_bytes`` (any format Pillow reads) with glasses and a moustache."""
    from PIL import Image, ImageDraw

    with Image.open(io.BytesIO(image_bytes)) as source:
        image = source.convert("RGBA").resize((size, size))
    draw = ImageDraw.Draw(image)
    s = size / 192
    eye_y, lens = 78 * s, 26 * s
    for cx in (66 * s, 126 * s):
        draw.ellipse((cx - lens, eye_y - lens * 0.7, cx + lens, eye_y + lens * 0.7), fill=(20, 20, 20, 235))
    draw.line((92 * s, eye_y, 100 * s, eye_y), fill=(20, 20, 20, 255), width=max(2, int(5 * s)))
    draw.line(
        (40 * s, eye_y - 6 * s, 20 * s, eye_y - 12 * s), fill=(20, 20, 20, 255), width=max(2, int(4 * s))
    )
    draw.line(
        (152 * s, eye_y - 6 * s, 172 * s, eye_y - 12 * s), fill=(20, 20, 20, 255), width=max(2, int(4 * s))
    )
    draw.chord((60 * s, 112 * s, 132 * s, 150 * s), 180, 360, fill=(60, 35, 20, 240))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _download(url: str, timeout: float = 5.0) -> bytes | None:
    if not url.startswith(("https://", "http://")):
        return None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data: bytes = response.read(MAX_AVATAR_BYTES + 1)
    except OSError as exc:
        log.warning("could not fetch an avatar (%s)", type(exc).__name__)
        return None
    return data if len(data) <= MAX_AVATAR_BYTES else None


class Avatars:
    """Builds the :class:`Identity` a persona posts with, per ``frontend.avatar``."""

    def __init__(self, mode: str, home: Home, directory: MemberDirectory, public_url: str | None) -> None:
        self.mode = mode
        self.home = home
        self.directory = directory
        self.public_url = public_url.rstrip("/") if public_url else None

    def identity(self, team: str, persona: Persona) -> Identity:
        username = bot_username(persona)
        if self.mode == "none":
            return Identity(username)
        member = self.directory.members(team).get(persona.id)
        picture = member.avatar_url if member else None
        if self.mode == "profile":
            return Identity(username, icon_url=picture, icon_emoji=FALLBACK_EMOJI)
        if self.public_url and picture and self._ensure_disguised(persona, picture):
            return Identity(username, icon_url=f"{self.public_url}/avatars/{persona.team}/{persona.id}.png")
        return Identity(username, icon_emoji=FALLBACK_EMOJI)

    def _ensure_disguised(self, persona: Persona, picture: str) -> bool:
        path = avatar_path(self.home, persona.team, persona.id)
        if path.is_file():
            return True
        data = _download(picture)
        if data is None:
            return False
        try:
            png = disguise(data)
        except (OSError, ValueError) as exc:  # not an image Pillow can read
            log.warning("could not disguise an avatar (%s)", type(exc).__name__)
            return False
        with atomic_write(path, "wb") as fh:
            fh.write(png)
        return True


def cached_avatar(home: Home, team: str, user_id: str) -> Path | None:
    from doppelkit.models import SAFE_ID

    if not (SAFE_ID.fullmatch(team) and SAFE_ID.fullmatch(user_id)):
        return None
    path = avatar_path(home, team, user_id)
    return path if path.is_file() else None
