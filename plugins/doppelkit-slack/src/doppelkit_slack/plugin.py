"""Entry point of the doppelkit-slack plugin: registers its components.

Imported at ``doppelkit --help``: keep it light (no slack_sdk at module level).
"""

from __future__ import annotations

from doppelkit import hookimpl
from doppelkit.hookspecs import Register
from doppelkit_slack.files import forget_person, forget_team
from doppelkit_slack.sources.api import SlackApiSource
from doppelkit_slack.sources.export import SlackExportSource

__all__ = ["forget_person", "forget_team", "register_frontends", "register_sources"]


@hookimpl
def register_sources(register: Register) -> None:
    register(SlackExportSource)
    register(SlackApiSource)


@hookimpl
def register_frontends(register: Register) -> None:
    from doppelkit_slack.bolt import BoltFrontend  # pydantic only; Bolt loads when serving

    register(BoltFrontend)
