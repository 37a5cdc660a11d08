"""``import doppelkit`` as a library, against personas published under a home (peft engine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from engine_testkit import ERIK, MAYA, build_tiny_base, publish_random_adapter

import doppelkit
from doppelkit import api
from doppelkit.home import Home

GREEDY = ("engine.temperature=0", "engine.max_new_tokens=6")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = Home.at(tmp_path_factory.mktemp("api") / "home")
    base = build_tiny_base(home)
    publish_random_adapter(home, base, MAYA, seed=11)
    publish_random_adapter(home, base, ERIK, seed=12)
    return home.root


@pytest.fixture(autouse=True)
def _free_engines() -> object:
    yield
    doppelkit.close()


def test_import_loads_nothing_heavy_until_used() -> None:
    heavy = ("torch", "transformers", "hydra", "peft")
    code = f"import sys, doppelkit; doppelkit.get_persona; print(sorted(set(sys.modules) & set({heavy!r})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_personas_lists_what_is_published(home: Path) -> None:
    listed = doppelkit.personas(home=home)
    assert [(p.name, p.id, p.version) for p in listed] == [("erik", ERIK.id, "v1"), ("maya", MAYA.id, "v1")]


def test_one_engine_serves_every_handle_and_is_freed_with_the_last(home: Path) -> None:
    maya = doppelkit.get_persona("maya", *GREEDY, home=home)
    erik = doppelkit.get_persona(ERIK.id, *GREEDY, home=home)
    assert maya.engine is erik.engine, "one engine per home and engine configuration"
    assert isinstance(maya.reply("did the deploy go out?"), list)
    engine = maya.engine
    maya.close()
    assert not engine._closed  # type: ignore[attr-defined]
    erik.close()
    assert engine._closed  # type: ignore[attr-defined]
    with pytest.raises(doppelkit.UserError, match="handle is closed"):
        maya.reply("still there?")


def test_greedy_replies_repeat_and_stream_matches(home: Path) -> None:
    with doppelkit.get_persona("maya", *GREEDY, home=home) as maya:
        first = maya.reply("did the deploy go out?", speaker="Ann")
        assert maya.reply("did the deploy go out?", speaker="Ann") == first
        streamed = "".join(maya.stream("did the deploy go out?", speaker="Ann"))
        from doppelkit.builtins.formatters.turns import split_reply

        assert split_reply(streamed) == first


def test_a_conversation_keeps_the_thread_with_named_speakers(home: Path) -> None:
    with doppelkit.get_persona("maya", *GREEDY, home=home) as maya:
        chat = maya.conversation(channel="design")
        replies = chat.say("hi maya", speaker="Sam")
        chat.say("what's up?", speaker="Priya")
        speakers = [speaker for speaker, _ in chat.messages]
        assert speakers[0] == "Sam" and "Priya" in speakers
        assert speakers.count("maya") >= len(replies)
        chat.reset()
        assert chat.messages == []


def test_mistakes_raise_named_errors_and_never_exit(home: Path) -> None:
    with pytest.raises(doppelkit.PersonaError, match="No trained persona matches persona.user='zed'"):
        doppelkit.get_persona("zed", home=home)
    with pytest.raises(doppelkit.ConfigError, match="did you mean engine.temperature"):
        doppelkit.get_persona("maya", "engine.temprature=0", home=home)
    assert api._ENGINES._engines == {}, "a failed get_persona holds no engine"


def test_quiet_by_default(home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with doppelkit.get_persona("maya", *GREEDY, home=home) as maya:
        maya.reply("hello?")
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
