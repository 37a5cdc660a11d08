"""The terminal ``chat`` frontend: persona lookup under home, the piped mode, the real CLI."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_testkit import ERIK, MAYA, build_tiny_base, publish_random_adapter

from doppelkit.errors import PersonaError
from doppelkit.home import Home
from doppelkit.interfaces import RunContext
from doppelkit.models import AdapterManifest, Persona, PersonaSelector, Thread
from doppelkit.testing import run_cli
from doppelkit.testing.contracts import FrontendContract
from doppelkit_lora.chat_frontend import YOU_ID, ChatFrontend, MessageStream
from doppelkit_lora.published import find_published_persona


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A home with two trained tiny personas (random adapters in the published layout)."""
    home = Home.at(tmp_path_factory.mktemp("chat") / "home")
    base = build_tiny_base(home)
    publish_random_adapter(home, base, MAYA, seed=11)
    publish_random_adapter(home, base, ERIK, seed=12)
    return home


class TestChatFrontendContract(FrontendContract):
    @pytest.fixture
    def frontend(self, run_context: RunContext) -> ChatFrontend:
        return ChatFrontend(ChatFrontend.Config(), run_context)


class ScriptedEngine:
    """An engine that answers from a script and records the threads it was asked about."""

    def __init__(self, replies: list[list[str]]) -> None:
        self.replies = replies
        self.threads: list[Thread] = []

    def current_version(self, team: str, user: str) -> str | None:
        return "v1"

    def personas(self) -> list[AdapterManifest]:
        return []  # the chat frontend finds its persona under home, not through the engine

    def stream(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> Iterator[str]:
        yield "\n\n---\n\n".join(self.reply(persona, thread))

    def reply(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> list[str]:
        self.threads.append(thread)
        return self.replies[len(self.threads) - 1]


def test_piped_input_gives_one_reply_block_per_line(run_context: RunContext) -> None:
    engine = ScriptedEngine([["yep shipped it", "all green"], [], ["sure"], ["never asked"]])
    out = io.StringIO()
    lines = [
        "did the deploy go out?\n",
        "\n",
        "anything else?\n",
        "/reset\n",
        "lunch?\n",
        "/quit\n",
        "more\n",
    ]
    ChatFrontend(ChatFrontend.Config(), run_context).scripted(engine, MAYA, lines, out)
    assert out.getvalue() == "maya: yep shipped it\nmaya: all green\n\nmaya: (no reply)\n\nmaya: sure\n\n"
    _, second, after_reset = engine.threads
    assert [m.text for m in second.messages] == [
        "did the deploy go out?",
        "yep shipped it",
        "all green",
        "anything else?",
    ], "the conversation so far is the thread the persona replies to"
    assert [m.user for m in second.messages] == [YOU_ID, MAYA.id, MAYA.id, YOU_ID]
    assert second.user_labels == {YOU_ID: "you", MAYA.id: "maya"}
    assert [m.text for m in after_reset.messages] == ["lunch?"], "/reset starts a new conversation"


def test_streamed_text_shows_each_message_on_its_own() -> None:
    shown = MessageStream()
    pieces: list[str | None] = []
    for chunk in ["yep shipped", " it\n", "\n-", "--\n\nall", " green\nso far"]:
        pieces.extend(shown.feed(chunk))
    pieces.extend(shown.close())
    assert pieces == ["yep shipped", " it", None, "all green", "\nso far"]


def test_personas_are_found_by_id_or_name(trained_home: Home) -> None:
    assert find_published_persona(trained_home, PersonaSelector(user="U0MAYA")).label == "maya"
    assert find_published_persona(trained_home, PersonaSelector(user="Erik")).id == ERIK.id
    with pytest.raises(PersonaError, match=r"Trained personas: erik \(U0ERIK.*maya \(U0MAYA"):
        find_published_persona(trained_home, PersonaSelector(user="zed"))
    with pytest.raises(PersonaError, match="set persona.user"):
        find_published_persona(trained_home, PersonaSelector())


def test_nothing_trained_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match=r"run `doppelkit persona.user=maya` first"):
        find_published_persona(Home.at(tmp_path), PersonaSelector(user="maya"))


def test_doppelkit_chat_from_piped_stdin(trained_home: Home) -> None:
    args = ["chat", "persona.user=maya", f"home={trained_home.root}", "engine.temperature=0"]
    result = run_cli([*args, "engine.max_new_tokens=6"], input="hi\nhow are you\n", timeout=120)
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("\n\n")
    assert blocks[-1] == "" and len(blocks) == 3, result.stdout
    for block in blocks[:2]:
        assert block.startswith("maya: ") and len(block) > len("maya: "), block
    assert "chatting with maya (U0MAYA, adapter v1)" in result.stderr


def test_doppelkit_chat_with_an_unknown_persona(trained_home: Home) -> None:
    result = run_cli(["chat", "persona.user=zed", f"home={trained_home.root}"], input="hi\n", timeout=120)
    assert result.returncode == 2
    assert "No trained persona matches persona.user='zed'" in result.stderr
    assert "maya (U0MAYA" in result.stderr and "Traceback" not in result.stderr


def test_terminal_reply_streams_each_message_on_its_own_line(run_context: RunContext) -> None:
    from rich.console import Console

    from doppelkit_lora.chat_frontend import Conversation

    class ChunkedEngine(ScriptedEngine):
        def stream(
            self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None
        ) -> Iterator[str]:
            self.threads.append(thread)
            yield from ["yep ship", "ped it\n\n--", "-\n\nall green"]

    console = Console(file=io.StringIO(), width=80, color_system=None)
    frontend = ChatFrontend(ChatFrontend.Config(), run_context)
    conversation = Conversation(MAYA, frontend.config)
    frontend._stream_reply(console, ChunkedEngine([]), MAYA, conversation, "did it go out?")
    assert console.file.getvalue() == "maya: yep shipped it\nmaya: all green\n"  # type: ignore[attr-defined]
    assert [m.text for m in conversation.messages] == ["did it go out?", "yep shipped it", "all green"]
