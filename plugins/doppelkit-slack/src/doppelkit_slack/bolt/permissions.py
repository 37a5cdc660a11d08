"""Who may run which ``/doppel`` command (``frontend.permissions``).

Each command that changes something — ``train``, ``switch``, ``forget`` — lists who may run it:

* ``self`` — the person the command is about (train or forget *yourself*; make *yourself* the
  persona that answers);
* ``admins`` — the workspace's admins and owners (``is_admin`` / ``is_owner`` in ``users.list``);
* ``allowed`` — the user IDs in ``frontend.permissions.allowed``;
* ``anyone`` — every member.

By default each is ``[self, admins, allowed]`` (the allowed list starts empty). ``list``,
``status`` and ``help`` change nothing and are open to every member. An invoker whose admin
status cannot be looked up (``users.list`` failing) is not taken for an admin.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from doppelkit.models import SAFE_ID

Who = Literal["self", "admins", "allowed", "anyone"]
DEFAULT: list[Who] = ["self", "admins", "allowed"]
GUARDED = ("train", "switch", "forget")


class Permissions(BaseModel):
    """``frontend.permissions``: who may run the ``/doppel`` commands that change something."""

    model_config = ConfigDict(extra="forbid")

    train: list[Who] = Field(default_factory=lambda: list(DEFAULT))
    switch: list[Who] = Field(default_factory=lambda: list(DEFAULT))
    forget: list[Who] = Field(default_factory=lambda: list(DEFAULT))
    allowed: list[str] = Field(default_factory=list, description="user IDs given the `allowed` rule")

    def refusal(self, verb: str, invoker: str, target: str, *, is_admin: bool) -> str | None:
        """None if ``invoker`` may run ``verb`` about ``target``; else the reply saying why not."""
        if verb not in GUARDED:
            return None
        rules: list[Who] = getattr(self, verb)
        if not SAFE_ID.fullmatch(invoker or ""):
            return "I can't tell who sent this command, so I won't run it."
        if (
            "anyone" in rules
            or ("self" in rules and invoker == target)
            or ("admins" in rules and is_admin)
            or ("allowed" in rules and invoker in self.allowed)
        ):
            return None
        who = {"self": "the person themself", "admins": "workspace admins", "allowed": "listed people"}
        names = [who[r] for r in rules if r in who] or ["nobody"]
        allowed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        return f"Only {allowed} may `/doppel {verb}` someone. Ask a workspace admin."
