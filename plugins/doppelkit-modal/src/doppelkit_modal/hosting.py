"""What a run must look like to be hosted on Modal, checked before anything is deployed.

* ``home`` is the Volume inside the containers: a run's plain data is rewritten for it.
* The bot's persona store must be a database every container reaches. Each container sees its
  own copy of the Volume until it commits, and the last commit wins, so SQLite on the Volume
  would lose claims and states (two containers would both answer one mention). The URL comes
  from ``frontend.store_url`` or, better, from ``DOPPELKIT_STORE_URL`` in a Modal Secret
  (``backend.web_secrets``), so the password never leaves Modal.
* The base model must be reachable from Modal: a Hub id, not a directory of this machine.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from doppelkit.errors import UserError
from doppelkit_modal.config import ModalConfig

STORE_HELP = (
    "put DOPPELKIT_STORE_URL=postgresql+psycopg://USER:PASSWORD@HOST/DB in the Modal Secret named by "
    "backend.web_secrets (or set frontend.store_url to such a URL)"
)


def remote_run_data(data: dict[str, Any], config: ModalConfig) -> dict[str, Any]:
    """The run as the containers see it: ``home`` is the Volume, the dataset at its place there."""
    remote = copy.deepcopy(data)
    remote["home"] = config.mount_path
    if isinstance(remote.get("dataset"), dict):
        remote["dataset"]["path"] = None  # uploaded to home/datasets/<team>/<user>/ on the Volume
    return remote


def check_model(data: dict[str, Any]) -> None:
    name = str((data.get("model") or {}).get("name") or "")
    if name and ("/" in name or name.startswith((".", "~"))) and Path(name).expanduser().is_dir():
        raise UserError(
            f"model.name={name} is a directory on this machine, which Modal's containers cannot read; "
            "use a Hugging Face Hub id (a Modal Secret with HF_TOKEN in backend.secrets for gated ones)"
        )


def normalize_store_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` (no driver) → the psycopg 3 driver the image ships."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def check_store_url(url: str | None, *, from_secret_possible: bool) -> None:
    """Refuse a store the containers cannot share (see module docstring)."""
    if url is None:
        if from_secret_possible:
            return  # DOPPELKIT_STORE_URL is read from a Secret when the container starts
        raise UserError(
            f"the bot's store would be SQLite on the Volume, which Modal cannot share safely; {STORE_HELP}"
        )
    if url.startswith("sqlite"):
        raise UserError(
            f"frontend.store_url is SQLite ({url.split('?')[0]}): on Modal every container has its own copy "
            f"of the Volume and the last commit wins, so the bot would lose claims and states; {STORE_HELP}"
        )


def resolve_store_url(data: dict[str, Any], from_env: str | None) -> dict[str, Any]:
    """In the web container: the store URL the bot uses (config first, then the Secret's), checked.

    Only frontends with a ``store_url`` setting keep a store; others pass unchanged.
    """
    frontend = data.get("frontend")
    if not isinstance(frontend, dict) or "store_url" not in frontend:
        return data
    url = frontend.get("store_url") or (from_env or "").strip() or None
    check_store_url(url, from_secret_possible=False)
    assert url is not None
    resolved = copy.deepcopy(data)
    resolved["frontend"]["store_url"] = normalize_store_url(url)
    return resolved
