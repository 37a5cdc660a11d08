"""Test helpers for doppelkit and its plugins.

* :mod:`doppelkit.testing.fixtures` — pytest fixtures (loaded automatically through the
  ``pytest11`` entry point): ``doppelkit_pm``, ``register_plugin``, ``doppelkit_home``,
  ``run_context``.
* :mod:`doppelkit.testing.contracts` — one contract test suite per plugin kind; a plugin's
  tests subclass the suite for its kind and provide the fixtures it names.
* :mod:`doppelkit.testing.workspaces` — an in-memory workspace source and the run config to
  ``ingest`` it, for tests that ingest several personas of one workspace.
"""

from doppelkit.testing.helpers import make_context, run_cli

__all__ = ["make_context", "run_cli"]
