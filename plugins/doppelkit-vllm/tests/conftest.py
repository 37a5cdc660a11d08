"""Fixtures of the vLLM engine's tests: a tiny base, published personas, both engines.

These tests need vLLM, which lives in its own environment (``make test-vllm``; see the plugin's
README): without it every test here is skipped, with that reason shown.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from vllm_testkit import GREEDY, PERSONAS, SEEDS, VLLM_TINY, make_peft, make_vllm

from doppelkit.home import Home
from doppelkit_lora.model.tiny import TinyBase
from doppelkit_lora.testing.engines import build_tiny_base, publish_random_adapter

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
SKIP_REASON = "vLLM is not installed here: the vllm engine's tests run in .venv-vllm (`make test-vllm`)"

os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAVE_VLLM:
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, TinyBase]:
    """A home with three personas on one tiny base (read-only for the tests that use it)."""
    home = Home.at(tmp_path_factory.mktemp("vllm") / "home")
    base = build_tiny_base(home, VLLM_TINY, key="vllmtest")
    for persona in PERSONAS:
        publish_random_adapter(home, base, persona, seed=SEEDS[persona.id])
    return home, base


@pytest.fixture(scope="module")
def vllm_engine(published: tuple[Home, TinyBase]) -> Iterator[object]:
    if not HAVE_VLLM:
        pytest.skip(SKIP_REASON)
    with make_vllm(published[0], GREEDY) as engine:
        yield engine


@pytest.fixture(scope="module")
def peft_engine(published: tuple[Home, TinyBase]) -> Iterator[object]:
    with make_peft(published[0]) as engine:
        yield engine
