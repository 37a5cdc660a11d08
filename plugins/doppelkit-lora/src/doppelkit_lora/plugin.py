"""Entry point of the doppelkit-lora plugin: registers its components.

Importing this module must stay cheap (``doppelkit --help`` imports it): the trainer module
imports torch, transformers and peft only inside the functions that use them.
"""

from __future__ import annotations

from doppelkit import hookimpl
from doppelkit.hookspecs import Register


@hookimpl
def register_trainers(register: Register) -> None:
    from doppelkit_lora.trainer import LoraTrainer

    register(LoraTrainer)


@hookimpl
def register_frontends(register: Register) -> None:
    from doppelkit_lora.chat_frontend import ChatFrontend

    register(ChatFrontend)
