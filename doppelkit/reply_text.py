"""Where a generated reply ends, and which part of it is safe to show while it streams.

The model writes one assistant turn, but may run on past it: into a stop sequence, or into a
transcript line of someone else (``Ann: sure``) — the shape it saw in its prompt's user turns.
:class:`ReplyCutter` looks at the decoded text after every token and says how much of it is
final. It holds back a tail that could still turn into a cut (the start of a stop sequence, a
line that could become ``Ann:``, trailing whitespace, a half-decoded character), so the chunks a
stream has already shown never have to be taken back and their concatenation equals the final
reply exactly.

Pure Python: no torch, testable on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

REPLACEMENT_CHAR = "\ufffd"  # what a byte-level decoder shows for an incomplete UTF-8 sequence


@dataclass(frozen=True)
class Cut:
    """The reply as far as it can be shown now; ``done`` when nothing more may follow."""

    text: str
    done: bool


class ReplyCutter:
    """Finds the end of one persona turn in the text generated so far.

    ``stop``: sequences that end the reply (not included). ``other_speakers``: names of the other
    people in the conversation; a line starting with ``Name:`` ends the reply. ``persona_label``:
    the persona's own name; a reply starting with ``Name:`` has that tag removed.
    """

    def __init__(
        self, stop: Iterable[str] = (), other_speakers: Iterable[str] = (), persona_label: str = ""
    ) -> None:
        self.stop = tuple(s for s in stop if s)
        own = persona_label.strip()
        self.own_tag = f"{own}:" if own else ""
        self.speaker_tags = tuple(
            sorted({f"{name.strip()}:" for name in other_speakers if name.strip()} - {self.own_tag})
        )

    def update(self, generated: str, *, finished: bool = False) -> Cut:
        """The final text so far of ``generated`` (all text decoded since the prompt).

        ``finished``: generation ended (EOS, token limit): nothing is held back any more.
        """
        text = self._without_own_tag(generated.lstrip(), finished)
        end, done = self._earliest_cut(text)
        if done:
            return Cut(text[:end].rstrip(), True)
        if finished:
            return Cut(text.rstrip(), True)
        return Cut(text[: self._safe_length(text)], False)

    def _without_own_tag(self, text: str, finished: bool) -> str:
        if not self.own_tag:
            return text
        if text.startswith(self.own_tag):
            return text[len(self.own_tag) :].lstrip()
        if not finished and self.own_tag.startswith(text):
            return ""  # could still become the persona's own tag: show nothing yet
        return text

    def _earliest_cut(self, text: str) -> tuple[int, bool]:
        cuts = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        for start in _line_starts(text):
            if text.startswith(self.speaker_tags, start):
                cuts.append(start)
                break
        return (min(cuts), True) if cuts else (len(text), False)

    def _safe_length(self, text: str) -> int:
        safe = len(text.rstrip())  # trailing whitespace waits for what follows it
        if text.endswith(REPLACEMENT_CHAR):
            safe = min(safe, len(text.rstrip(REPLACEMENT_CHAR)))
        for stop in self.stop:  # a suffix that could grow into a stop sequence
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    safe = min(safe, len(text) - k)
                    break
        line_start = text.rfind("\n") + 1
        last_line = text[line_start:]
        if last_line and any(tag.startswith(last_line) for tag in self.speaker_tags):
            safe = min(safe, line_start)  # a line that could still become "Ann:"
        # Whitespace before a held-back tail waits too: the final reply is right-stripped.
        return len(text[: max(safe, 0)].rstrip())


def _line_starts(text: str) -> Iterable[int]:
    yield 0
    index = text.find("\n")
    while index >= 0:
        yield index + 1
        index = text.find("\n", index + 1)
