"""The ``chat`` frontend: talk to a trained persona in the terminal.

``doppelkit chat persona.user=maya`` resolves the persona among those the engine can serve
(``engine.personas()``: no workspace export needed), then:

* on a terminal: a prompt, the reply streamed as it is generated (a persona that writes
  several messages in a row shows each on its own line), ``/reset`` to start a new
  conversation, ``/quit`` (or Ctrl-D) to leave;
* when stdin is not a terminal: one message per input line and one reply block per line read
  on stdout — each of the persona's messages as ``name: text``, then an empty line — so it can
  be scripted and tested. Status lines go to stderr.

The conversation is kept as a thread (you and the persona, :mod:`doppelkit.conversation`), so the
formatter builds the prompt exactly as for a Slack thread, within its context budget.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from doppelkit.artifacts import find_published_persona
from doppelkit.builtins.formatters.turns import split_reply
from doppelkit.conversation import Conversation
from doppelkit.hookspecs import Register, hookimpl
from doppelkit.interfaces import Engine, RunContext
from doppelkit.models import Persona

QUIT = "/quit"
RESET = "/reset"
NO_REPLY = "(no reply)"
# The formatters' reply separator (``\n\n---\n\n``), matched as leniently as ``split_reply``.
_SEPARATOR = re.compile(r"\n[ \t]*---[ \t]*\n")


class ChatConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_name: str = Field(
        "you", min_length=1, description="how you appear to the persona in the conversation"
    )
    channel_name: str = Field(
        "chat", min_length=1, description="the channel name the persona's prompt mentions"
    )
    max_messages: int = Field(
        100, ge=2, description="messages kept in the conversation (the formatter's budget also applies)"
    )


class MessageStream:
    """Turns streamed reply text into display pieces: text, and breaks between messages.

    Holds back text from the last newline until it is clear it does not start a separator.
    """

    def __init__(self) -> None:
        self.buffer = ""
        self.started = False

    def feed(self, chunk: str) -> Iterator[str | None]:
        """Yields text to show, and ``None`` where a new message begins."""
        self.buffer += chunk
        while (match := _SEPARATOR.search(self.buffer)) is not None:
            yield from self._text(self.buffer[: match.start()].rstrip())
            if self.started:
                yield None
                self.started = False
            self.buffer = self.buffer[match.end() :]
        # A separator starts at a newline: hold back the last line and the whitespace before it.
        cut = self.buffer.rfind("\n")
        shown = self.buffer[:cut].rstrip() if cut >= 0 else self.buffer
        yield from self._text(shown)
        self.buffer = self.buffer[len(shown) :]

    def close(self) -> Iterator[str | None]:
        yield from self._text(self.buffer.rstrip())
        self.buffer = ""

    def _text(self, text: str) -> Iterator[str]:
        if not self.started:
            text = text.lstrip()
        if text:
            self.started = True
            yield text


class ChatFrontend:
    """Terminal chat with one persona (``doppelkit chat persona.user=X``)."""

    name: ClassVar[str] = "chat"
    Config: ClassVar[type[ChatConfig]] = ChatConfig

    def __init__(self, config: ChatConfig, context: RunContext) -> None:
        self.config = config
        self.context = context

    def conversation(self, persona: Persona) -> Conversation:
        return Conversation(
            persona, channel_name=self.config.channel_name, max_messages=self.config.max_messages
        )

    def serve(self, engine: Engine) -> None:
        """Chat until ``/quit`` or end of input; the caller closes the engine."""
        persona = find_published_persona(engine.personas(), self.context.persona, self.context.home)
        if sys.stdin.isatty():
            self.interactive(engine, persona)
        else:
            self.scripted(engine, persona, sys.stdin, sys.stdout)

    # --- piped: one reply block per line ---------------------------------------------------

    def scripted(self, engine: Engine, persona: Persona, lines: Iterable[str], out: IO[str]) -> None:
        """One reply block per non-empty input line; ``/reset`` and ``/quit`` work here too."""
        conversation = self.conversation(persona)
        version = engine.current_version(persona.team, persona.id)
        self.context.console.print(
            f"chatting with {persona.label} ({persona.id}, adapter {version})", highlight=False
        )
        for raw in lines:
            text = raw.strip()
            if not text:
                continue
            if text == QUIT:
                break
            if text == RESET:
                conversation.reset()
                continue
            replies = engine.reply(persona, conversation.say(text, self.config.user_name))
            conversation.heard(replies)
            for reply in replies or [NO_REPLY]:
                out.write(f"{persona.label}: {reply}\n")
            out.write("\n")
            out.flush()

    # --- terminal: prompt and streaming -----------------------------------------------------

    def interactive(self, engine: Engine, persona: Persona) -> None:
        from rich.console import Console
        from rich.prompt import Prompt

        console = Console()
        version = engine.current_version(persona.team, persona.id)
        console.print(
            f"[bold]{persona.label}[/] ({persona.id}, adapter {version}) — "
            f"type a message; [bold]{RESET}[/] starts over, [bold]{QUIT}[/] leaves.",
            highlight=False,
        )
        conversation = self.conversation(persona)
        while True:
            try:
                text = Prompt.ask(f"[bold cyan]{self.config.user_name}[/]", console=console).strip()
            except (EOFError, KeyboardInterrupt):
                console.print()
                return
            if text == QUIT:
                return
            if text == RESET:
                conversation.reset()
                console.print("[dim](new conversation)[/]")
                continue
            if text:
                self._stream_reply(console, engine, persona, conversation, text)

    def _stream_reply(
        self, console: Any, engine: Engine, persona: Persona, conversation: Conversation, text: str
    ) -> None:
        prefix = f"[bold magenta]{persona.label}[/]: "
        shown = MessageStream()
        pieces: list[str] = []
        console.print(prefix, end="")
        chunks = engine.stream(persona, conversation.say(text, self.config.user_name))
        try:
            for chunk in chunks:
                pieces.append(chunk)
                self._show(console, shown.feed(chunk), prefix)
        except KeyboardInterrupt:  # stop this reply, keep chatting
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        self._show(console, shown.close(), prefix)
        if not shown.started and not pieces:
            console.print(f"[dim]{NO_REPLY}[/]", end="")
        console.print()
        conversation.heard(split_reply("".join(pieces)))

    @staticmethod
    def _show(console: Any, pieces: Iterable[str | None], prefix: str) -> None:
        for piece in pieces:
            if piece is None:
                console.print()
                console.print(prefix, end="")
            else:
                console.print(piece, end="", markup=False, highlight=False)


@hookimpl
def register_frontends(register: Register) -> None:
    register(ChatFrontend)
