"""What ``/doppel forget`` and an uninstall delete: whatever every plugin wrote, through the
``forget_person`` / ``forget_team`` hooks (:mod:`doppelkit.forget`), then the store's rows.

Per person: their dataset, adapters, training checkpoints, cached avatar — and whatever any
other installed plugin keeps about them. Team-wide data (the workspace corpus, base models
pretrained on it, an unfinished scrape, the avatar cache) is built from *everyone's* public
text and cannot be edited per person cheaply: it goes with the last persona of the team, and
on uninstall or revocation of the bot token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from doppelkit import forget
from doppelkit.home import Home


@dataclass(frozen=True)
class Forgetting:
    hook: Any  # the run's hook relay: every installed plugin answers
    home: Home

    def person(self, team: str, user: str) -> list[str]:
        """Delete everything under home derived from this person; the names of what went."""
        return forget.forget_person(self.hook, self.home, team, user)

    def team(self, team: str) -> list[str]:
        """Delete the team-wide data and every remaining person's files of ``team``."""
        return forget.forget_team(self.hook, self.home, team)

    def people_left(self, team: str) -> bool:
        return forget.people_left(self.home, team)
