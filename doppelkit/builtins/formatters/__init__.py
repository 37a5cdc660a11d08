"""The built-in formatters (``chat``, ``alpaca``) and scrubbers."""

from __future__ import annotations

from doppelkit.hookspecs import Register, hookimpl


@hookimpl
def register_formatters(register: Register) -> None:
    pass
