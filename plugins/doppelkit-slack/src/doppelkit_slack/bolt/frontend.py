"""The ``bolt`` frontend component: ``BoltFrontend`` and ``serve``.

Kept light on purpose (pydantic only): the plugin entry point imports it for ``doppelkit --help``.
Its config lives in :mod:`doppelkit_slack.bolt.config`, which the server and the runtime import
too, so nothing here is imported back by what ``serve`` loads.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from doppelkit.interfaces import Engine, RunContext, WebApp
from doppelkit_slack.bolt.config import BoltConfig


class BoltFrontend:
    """Serves the team's active persona in Slack: replies in threads when @mentioned."""

    name: ClassVar[str] = "bolt"
    Config: ClassVar[type[BaseModel]] = BoltConfig

    def __init__(self, config: Any, context: RunContext) -> None:
        self.config: BoltConfig = config
        self.context = context

    def serve(self, engine: Engine) -> None:
        from doppelkit_slack.bolt.server import serve

        serve(self.config, self.context, engine)

    # --- hosted as a web application (doppelkit.interfaces.WebFrontend) ---------------------

    def prepare(self) -> None:
        """Import Bolt, SQLAlchemy and the rest now (a host may snapshot the process after)."""
        import doppelkit_slack.bolt.server  # noqa: F401

    def asgi_app(self, engine: Engine) -> WebApp:
        """The bot as an ASGI app (HTTP mode's), for a host such as a Modal web endpoint."""
        from doppelkit_slack.bolt.server import web_app

        return web_app(self.config, self.context, engine)
