"""doppelkit: persona bots that learn how one person writes from their team chat.

The public surface for plugin authors is small: :data:`hookimpl` to implement hooks, the
interfaces in :mod:`doppelkit.interfaces`, the models in :mod:`doppelkit.models`, and the test
helpers in :mod:`doppelkit.testing`. Importing doppelkit loads nothing heavy.
"""

from importlib.metadata import PackageNotFoundError, version

from doppelkit.hookspecs import hookimpl

try:
    __version__ = version("doppelkit")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "hookimpl"]
