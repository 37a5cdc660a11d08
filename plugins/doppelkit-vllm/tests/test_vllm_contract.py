"""engine=vllm holds to the engine contract every engine passes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from vllm_testkit import ERIK, GREEDY, make_vllm

from doppelkit.home import Home
from doppelkit.models import Persona
from doppelkit.testing.contracts import EngineContract
from doppelkit_lora.model.tiny import TinyBase


@pytest.fixture(scope="module")
def contract_engine(published: tuple[Home, TinyBase]) -> Iterator[Any]:
    """One vLLM engine for the whole class (a start takes seconds); its last test closes it."""
    with make_vllm(published[0], GREEDY) as engine:
        yield engine


class TestVllmEngine(EngineContract):
    @pytest.fixture
    def engine(self, contract_engine: Any) -> Any:
        return contract_engine

    @pytest.fixture
    def persona(self) -> Persona:
        return ERIK
