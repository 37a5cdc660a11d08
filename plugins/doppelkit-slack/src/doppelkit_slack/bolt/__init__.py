"""The ``bolt`` frontend: a persona as a Slack bot (Events API over HTTP, or Socket Mode).

Only :mod:`doppelkit_slack.bolt.frontend` and :mod:`doppelkit_slack.bolt.config` are imported at
start-up; everything that needs slack_bolt, SQLAlchemy, uvicorn or Pillow is imported when
``serve`` runs.
"""

from doppelkit_slack.bolt.frontend import BoltFrontend

__all__ = ["BoltFrontend"]
