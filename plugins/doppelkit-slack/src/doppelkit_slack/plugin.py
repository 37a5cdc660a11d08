"""Entry point of the doppelkit-slack plugin: registers its components."""

from __future__ import annotations

from doppelkit import hookimpl
from doppelkit.hookspecs import Register


@hookimpl
def register_sources(register: Register) -> None:
    pass
