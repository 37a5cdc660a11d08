"""Reading a dataset JSONL and tokenising it through the persona's formatter."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppelkit.errors import InputDataError
from doppelkit.interfaces import Formatter, Rendered
from doppelkit.models import Example

IGNORE_INDEX = -100


def read_examples(path: Path | None) -> list[Example]:
    """All examples of a dataset JSONL (``[]`` for ``None``), with the bad line named on error."""
    if path is None:
        return []
    examples = []
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    examples.append(Example.model_validate_json(line))
                except ValueError as exc:
                    raise InputDataError(f"{path}:{number} is not a valid example: {exc}") from None
    except OSError as exc:
        raise InputDataError(f"cannot read the dataset {path}: {exc}") from None
    return examples


@dataclass
class RenderStats:
    examples: int = 0
    truncated: int = 0  # prompts cut from the left to fit max_seq_len
    dropped: int = 0  # nothing left to learn after truncation (a response longer than max_seq_len)


def render_examples(
    examples: Iterable[Example], formatter: Formatter, tokenizer: Any, max_seq_len: int
) -> tuple[list[Rendered], RenderStats]:
    """Tokenise through the formatter (prompt masked); fit each example into ``max_seq_len``.

    Too-long examples lose the *start* of their prompt (the oldest context), never the
    response: the persona's words are what we train on.
    """
    stats = RenderStats()
    rendered = []
    for example in examples:
        item = formatter.render(example, tokenizer)
        if len(item.input_ids) > max_seq_len:
            stats.truncated += 1
            item = Rendered(item.input_ids[-max_seq_len:], item.labels[-max_seq_len:])
        # Position 0 is never a target after the shift, so at least one label beyond it is needed.
        if not any(label != IGNORE_INDEX for label in item.labels[1:]):
            stats.dropped += 1
            continue
        rendered.append(item)
        stats.examples += 1
    return rendered, stats


def dataset_fingerprint(examples: Iterable[Example]) -> str:
    """A stable hash of a dataset's content (for checkpoint keys when no report hash exists)."""
    import hashlib

    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example.model_dump(mode="json"), sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()
