"""Fixtures shared by the Bolt frontend tests (helpers live in ``bolt_support``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bolt_support import TEAM, Bot, fake_slack, start_bot, stop_bot

from doppelkit.testing.fakes import EchoEngine
from doppelkit_slack.testing import FakeSlack


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """The small fake workspace the bot tests talk to (files may override it)."""
    with fake_slack() as fake:
        yield fake


@pytest.fixture
def bot(tmp_path: Path, slack: FakeSlack) -> Iterator[Bot]:
    """A running bot over HTTP whose persona ``U_ANN`` is trained (an EchoEngine answers)."""
    made = start_bot(tmp_path, slack, EchoEngine(versions={(TEAM, "U_ANN"): "v1"}))
    yield made
    stop_bot(made)
