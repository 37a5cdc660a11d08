"""Entry point of the doppelkit-lora plugin: registers its components."""

from __future__ import annotations

from doppelkit import hookimpl
from doppelkit.hookspecs import Register


@hookimpl
def register_trainers(register: Register) -> None:
    pass
