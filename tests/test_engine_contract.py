"""The engine contract holds a fake engine to the rules, and fails engines that break them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from doppelkit.models import Persona, Thread, User
from doppelkit.testing.contracts import EngineContract
from doppelkit.testing.fakes import EchoEngine

MAYA = Persona(team="T0TEST", user=User(id="U0MAYA", display_name="maya"))


class TestEchoEngine(EngineContract):
    @pytest.fixture
    def engine(self) -> EchoEngine:
        return EchoEngine(versions={(MAYA.team, MAYA.id): "v3"}, labels={MAYA.id: "maya"})

    @pytest.fixture
    def persona(self) -> Persona:
        return MAYA


@dataclass
class SaysNothing(EchoEngine):
    def reply(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> list[str]:
        super().reply(persona, thread, bot_user_id=bot_user_id)
        return []


@dataclass
class SpeaksForSam(EchoEngine):
    def _answer(self, persona: Persona, thread: Thread) -> list[str]:
        return ["Sam: sure, all good"]


@dataclass
class StreamsSomethingElse(EchoEngine):
    def stream(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> Iterator[str]:
        yield "a different reply"


@dataclass
class AnswersStrangers(EchoEngine):
    def current_version(self, team: str, user: str) -> str | None:
        return "v1"


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (SaysNothing, "test_reply_is_the_personas_messages"),
        (SpeaksForSam, "test_reply_is_the_personas_messages"),
        (StreamsSomethingElse, "test_stream_gives_the_same_reply"),
        (AnswersStrangers, "test_an_unknown_persona_has_no_version_and_no_reply"),
    ],
)
def test_the_contract_fails_a_broken_engine(broken: type[EchoEngine], check: str) -> None:
    engine = broken(versions={(MAYA.team, MAYA.id): "v1"})
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        getattr(EngineContract(), check)(engine, MAYA)
