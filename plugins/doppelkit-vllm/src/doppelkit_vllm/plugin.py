"""Entry point of the doppelkit-vllm plugin: registers ``engine=vllm``.

Importing this module stays cheap (``doppelkit --help`` imports it): vLLM is imported only when
an in-process engine starts, so ``engine=vllm engine.url=…`` works without vLLM installed.
"""

from __future__ import annotations

from doppelkit import hookimpl
from doppelkit.hookspecs import Register


@hookimpl
def register_engines(register: Register) -> None:
    from doppelkit_vllm.engine import VllmEngine

    register(VllmEngine)
