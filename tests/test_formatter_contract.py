"""Both built-in formatters pass the formatter contract, with and without a chat template."""

from __future__ import annotations

from typing import Any

import pytest

from doppelkit.builtins.formatters import AlpacaFormatter, ChatFormatter
from doppelkit.interfaces import Formatter, RunContext
from doppelkit.models import Persona, Thread
from doppelkit.testing.contracts import FormatterContract
from doppelkit.testing.samples import sample_persona, sample_thread
from doppelkit.testing.tokenizers import build_test_tokenizer

TOKENIZERS = {
    "fallback": {},
    "chat_template": {"chat_template": True},
    "bos": {"add_bos": True},
}


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def tokenizer(request: pytest.FixtureRequest) -> Any:
    return build_test_tokenizer(**TOKENIZERS[request.param])


@pytest.fixture
def persona() -> Persona:
    return sample_persona()


@pytest.fixture
def thread() -> Thread:
    return sample_thread()


class TestChatFormatter(FormatterContract):
    @pytest.fixture
    def formatter(self, run_context: RunContext) -> Formatter:
        return ChatFormatter(ChatFormatter.Config(), run_context)


class TestAlpacaFormatter(FormatterContract):
    @pytest.fixture
    def formatter(self, run_context: RunContext) -> Formatter:
        return AlpacaFormatter(AlpacaFormatter.Config(), run_context)


def test_both_are_registered_builtins(doppelkit_pm: Any) -> None:
    from doppelkit.plugins import build_registries

    registries = build_registries(doppelkit_pm)
    assert registries.formatter.get("chat") is ChatFormatter
    assert registries.formatter.get("alpaca") is AlpacaFormatter
