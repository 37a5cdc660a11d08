"""Are Modal credentials configured? Answered without a network call and without importing
modal (which alone takes most of a second), in well under a millisecond.

Why not just try: without a token modal fails at once, but with a wrong or half-set one the
client can wait about a minute before failing. And the answer is needed *before* anything
starts — an ingest of a large export, an upload — so a user without an account learns what to
run in a second, not after the work.

The rules are modal's own (``modal.config`` and ``modal.client._Client.from_env``, 1.6): inside
a Modal container the container's identity is used; otherwise a token (``token_id`` +
``token_secret``) or OAuth credentials, each key read from its ``MODAL_<KEY>`` environment
variable first, then from the active profile of ``~/.modal.toml`` (``MODAL_CONFIG_PATH``
overrides the file; ``MODAL_PROFILE`` the profile, else the one marked ``active = true``, else
``default``). The tests check these answers against modal's own reading of the same files.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppelkit.errors import UserError

HOW_TO = "run `modal setup` (or `modal token new`), or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
KEYS = (
    "token_id",
    "token_secret",
    "oauth_refresh_token",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_jwt_key",
)


class MissingCredentialsError(UserError):
    """No usable Modal credentials: the message says what to run."""


@dataclass(frozen=True)
class Credentials:
    ok: bool
    problem: str = ""  # one line, when not ok
    how: str = ""  # "token", "oauth" or "container"


def inside_modal() -> bool:
    """True in a Modal container (where modal itself ignores local credentials)."""
    return os.environ.get("MODAL_IS_REMOTE") == "1"


def config_path() -> Path:
    return Path(os.environ.get("MODAL_CONFIG_PATH") or Path("~/.modal.toml").expanduser())


def _profiles(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} cannot be read ({' '.join(str(exc).split())})") from None
    if not all(isinstance(section, dict) for section in data.values()):
        raise ValueError(f"{path} must hold one table per profile")
    return data


def credentials() -> Credentials:
    """What modal would log in with, without creating a client (see the module docstring)."""
    if inside_modal():
        return Credentials(True, how="container")
    path = config_path()
    try:
        profiles = _profiles(path)
    except ValueError as exc:
        return Credentials(False, f"Modal's configuration is invalid: {exc}; {HOW_TO}")
    active = [name for name, section in profiles.items() if section.get("active") is True]
    chosen = os.environ.get("MODAL_PROFILE") or (active[0] if active else "default")
    if len(active) > 1:
        return Credentials(
            False, f"several Modal profiles are active in {path}; run `modal profile activate NAME`"
        )
    if len(profiles) > 1 and not active and chosen == "default":
        return Credentials(False, f"no Modal profile is active in {path}; run `modal profile activate NAME`")
    if os.environ.get("MODAL_PROFILE") and chosen not in profiles:
        return Credentials(False, f"Modal profile {chosen!r} (MODAL_PROFILE) is not in {path}; {HOW_TO}")
    section = profiles.get(chosen, {})
    values = {key: os.environ.get(f"MODAL_{key.upper()}") or section.get(key) for key in KEYS}
    token = values["token_id"] or values["token_secret"]
    oauth = [values[k] for k in KEYS[2:]]
    if token and any(oauth):
        return Credentials(False, "Modal token and OAuth credentials are both configured; keep one")
    if any(oauth):
        refresh, client_id, secret, jwt_key = oauth
        if refresh and client_id and bool(secret) != bool(jwt_key):
            return Credentials(True, how="oauth")
        return Credentials(False, f"Modal's OAuth credentials are incomplete; {HOW_TO}")
    if values["token_id"] and values["token_secret"]:
        return Credentials(True, how="token")
    if token:
        return Credentials(False, f"only one of MODAL_TOKEN_ID and MODAL_TOKEN_SECRET is set; {HOW_TO}")
    return Credentials(False, f"Modal credentials not found: {HOW_TO}")


def require_credentials() -> None:
    """Raise :class:`MissingCredentialsError` (one line, exit status 2) unless modal can log in."""
    found = credentials()
    if not found.ok:
        raise MissingCredentialsError(found.problem + ". `+backend=modal` runs steps on Modal (modal.com).")
