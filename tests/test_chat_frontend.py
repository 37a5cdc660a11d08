"""The terminal ``chat`` frontend (a built-in): the piped mode, streaming, the conversation.

The real ``doppelkit chat`` against trained personas is tested with the peft engine, in the
lora plugin's tests."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from doppelkit.builtins.chat import ChatFrontend, MessageStream
from doppelkit.interfaces import RunContext
from doppelkit.models import AdapterManifest, Persona, Thread, User
from doppelkit.testing.contracts import FrontendContract

MAYA = Persona(team="T0TEST", user=User(id="U0MAYA", display_name="maya"))


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
        return []

    def close(self) -> None:
        pass

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
    you = second.messages[0].user
    assert [m.user for m in second.messages] == [you, MAYA.id, MAYA.id, you]
    assert second.user_labels == {you: "you", MAYA.id: "maya"}
    assert [m.text for m in after_reset.messages] == ["lunch?"], "/reset starts a new conversation"


def test_streamed_text_shows_each_message_on_its_own() -> None:
    shown = MessageStream()
    pieces: list[str | None] = []
    for chunk in ["yep shipped", " it\n", "\n-", "--\n\nall", " green\nso far"]:
        pieces.extend(shown.feed(chunk))
    pieces.extend(shown.close())
    assert pieces == ["yep shipped", " it", None, "all green", "\nso far"]


def test_terminal_reply_streams_each_message_on_its_own_line(run_context: RunContext) -> None:
    from rich.console import Console

    class ChunkedEngine(ScriptedEngine):
        def stream(
            self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None
        ) -> Iterator[str]:
            self.threads.append(thread)
            yield from ["yep ship", "ped it\n\n--", "-\n\nall green"]

    console = Console(file=io.StringIO(), width=80, color_system=None)
    frontend = ChatFrontend(ChatFrontend.Config(), run_context)
    conversation = frontend.conversation(MAYA)
    frontend._stream_reply(console, ChunkedEngine([]), MAYA, conversation, "did it go out?")
    assert console.file.getvalue() == "maya: yep shipped it\nmaya: all green\n"  # type: ignore[attr-defined]
    assert [m.text for m in conversation.messages] == ["did it go out?", "yep shipped it", "all green"]
