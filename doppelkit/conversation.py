"""A conversation with one persona, kept as the thread a formatter turns into a prompt.

People are named, not identified: each speaker gets a stable stand-in user ID in the thread
(``U0SPEAKER1``, …) and their name as its label, so the prompt reads ``Sam: …`` exactly as a
Slack thread's would. The persona's replies are its own messages, so the next prompt shows
the conversation as it went. The terminal chat and the Python API both use it.
"""

from __future__ import annotations

from collections.abc import Iterable

from doppelkit.models import Message, Persona, Thread

CHANNEL_ID = "C0CHAT"


class Conversation:
    """The messages so far (at most ``max_messages``, oldest dropped first) as a thread."""

    def __init__(self, persona: Persona, *, channel_name: str = "chat", max_messages: int = 100) -> None:
        self.persona = persona
        self.channel_name = channel_name
        self.max_messages = max_messages
        self.messages: list[Message] = []
        self.speakers: dict[str, str] = {}  # name → stand-in user ID, in order of appearance
        self._clock = 0

    def speaker_id(self, name: str) -> str:
        if name not in self.speakers:
            self.speakers[name] = f"U0SPEAKER{len(self.speakers) + 1}"
        return self.speakers[name]

    def say(self, text: str, speaker: str = "you") -> Thread:
        """Add ``speaker``'s message; the thread for the persona to answer."""
        self._add(self.speaker_id(speaker), text)
        return self.thread()

    def heard(self, replies: Iterable[str]) -> None:
        """Add the persona's messages (its reply, as posted)."""
        for reply in replies:
            self._add(self.persona.id, reply)

    def reset(self) -> None:
        """Start over: no messages (speakers keep their IDs)."""
        self.messages.clear()

    def thread(self) -> Thread:
        labels = {user_id: name for name, user_id in self.speakers.items()}
        labels[self.persona.id] = self.persona.label
        return Thread(
            team=self.persona.team,
            channel=CHANNEL_ID,
            channel_name=self.channel_name,
            ts=self.messages[0].ts if self.messages else "0.000000",
            messages=list(self.messages),
            user_labels=labels,
        )

    def _add(self, user: str, text: str) -> None:
        self._clock += 1
        self.messages.append(Message(ts=f"{self._clock}.000000", user=user, text=text))
        del self.messages[: -self.max_messages]
