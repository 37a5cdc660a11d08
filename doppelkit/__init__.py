"""doppelkit: persona bots that learn how one person writes from their team chat.

As a library (``docs/python-api.md``)::

    import doppelkit

    doppelkit.run("persona.user=maya", home="~/.doppelkit")      # ingest → train → publish
    maya = doppelkit.get_persona("maya", home="~/.doppelkit")
    maya.reply("how is the billing page coming along?")           # -> ["…", "…"]

For plugin authors: :data:`hookimpl` to implement hooks, the interfaces in
:mod:`doppelkit.interfaces`, the models in :mod:`doppelkit.models`, the test helpers in
:mod:`doppelkit.testing`. Importing doppelkit loads nothing heavy: the API's names load on
first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from doppelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from doppelkit.api import (
        Conversation,
        Doppel,
        PersonaInfo,
        close,
        get_persona,
        ingest,
        personas,
        run,
        train,
    )
    from doppelkit.errors import ConfigError, DoppelkitError, InputDataError, PersonaError, UserError

try:
    __version__ = version("doppelkit")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConfigError",
    "Conversation",
    "Doppel",
    "DoppelkitError",
    "InputDataError",
    "PersonaError",
    "PersonaInfo",
    "UserError",
    "__version__",
    "close",
    "get_persona",
    "hookimpl",
    "ingest",
    "personas",
    "run",
    "train",
]
_API = ("Conversation", "Doppel", "PersonaInfo", "close", "get_persona", "ingest", "personas", "run", "train")
_ERRORS = ("ConfigError", "DoppelkitError", "InputDataError", "PersonaError", "UserError")


def __getattr__(name: str) -> Any:
    """The Python API and the named errors, imported when first used."""
    if name in _API:
        from doppelkit import api

        return getattr(api, name)
    if name in _ERRORS:
        from doppelkit import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'doppelkit' has no attribute {name!r}")
