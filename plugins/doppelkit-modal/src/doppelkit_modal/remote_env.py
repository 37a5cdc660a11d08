"""Is this process a deployed Modal container, and with which ``backend.*``? Answered from the
environment alone (no modal import): the hooks that ask run in every process."""

from __future__ import annotations

import json
import os

from doppelkit_modal.config import ModalConfig

RUN_ENV = "DOPPELKIT_MODAL_RUN"  # set on the deployed classes (see doppelkit_modal.app)


def deployed_backend() -> ModalConfig | None:
    if os.environ.get("MODAL_IS_REMOTE") != "1":
        return None
    raw = os.environ.get(RUN_ENV)
    if not raw:
        return None
    section = dict(json.loads(raw).get("backend") or {})
    if section.pop("name", None) != "modal":
        return None
    return ModalConfig.model_validate(section)
