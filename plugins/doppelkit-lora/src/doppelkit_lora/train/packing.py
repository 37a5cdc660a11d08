"""Packing: many short examples per fixed-length row, with no attention between them.

Chat replies are short and their lengths vary a lot, so padding each batch to its longest
example wastes most of the compute. Instead examples are packed first-fit-decreasing into rows
of ``row_len`` tokens. Each example keeps its own positions (``position_ids`` restart at 0),
and with ``attention_mask=None`` transformers (5.x, sdpa/eager/flash) turns those restarts
into a block-diagonal causal mask, so a packed example sees exactly what it would see alone.
Targets are shifted *within* each example, so no token learns to predict its neighbour's start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from doppelkit.interfaces import Rendered

IGNORE_INDEX = -100


@dataclass
class PackedRow:
    input_ids: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)  # already shifted: targets[i] follows input_ids[i]
    segments: list[tuple[int, int]] = field(default_factory=list)  # [start, end) of each example

    def __len__(self) -> int:
        return len(self.input_ids)

    def add(self, item: Rendered) -> None:
        start = len(self.input_ids)
        self.input_ids.extend(item.input_ids)
        self.position_ids.extend(range(len(item.input_ids)))
        self.targets.extend([*item.labels[1:], IGNORE_INDEX])
        self.segments.append((start, len(self.input_ids)))

    @property
    def target_tokens(self) -> int:
        return sum(1 for t in self.targets if t != IGNORE_INDEX)


def pack(items: Sequence[Rendered], row_len: int) -> list[PackedRow]:
    """First-fit-decreasing packing; every item must already fit in ``row_len``."""
    rows: list[PackedRow] = []
    for item in sorted(items, key=lambda it: len(it.input_ids), reverse=True):
        if len(item.input_ids) > row_len:
            raise ValueError(f"an example of {len(item.input_ids)} tokens does not fit a {row_len}-token row")
        # Rows fill up in order, so scanning only those with room is enough at these sizes.
        target = next((row for row in rows if len(row) + len(item.input_ids) <= row_len), None)
        if target is None:
            target = PackedRow()
            rows.append(target)
        target.add(item)
    return rows


def collate(rows: Sequence[PackedRow], pad_id: int) -> dict[str, Any]:
    """Tensors for one batch, padded to its longest row (padding is its own dummy segment)."""
    import torch

    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        input_ids[i, :n] = torch.tensor(row.input_ids)
        targets[i, :n] = torch.tensor(row.targets)
        position_ids[i, :n] = torch.tensor(row.position_ids)
        # Pad positions restart at 0 so the padding forms a segment of its own.
        position_ids[i, n:] = torch.arange(width - n)
    return {"input_ids": input_ids, "position_ids": position_ids, "targets": targets}


def batches(rows: Sequence[PackedRow], batch_size: int, order: Sequence[int]) -> list[list[PackedRow]]:
    """Group rows (in ``order``) into batches of ``batch_size`` (the last may be smaller)."""
    ordered = [rows[i] for i in order]
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
