"""Packing: several examples in one row must train exactly as if each had its own row."""

from __future__ import annotations

import pytest
import torch

from doppelkit.interfaces import Rendered
from doppelkit_lora.train.objective import per_token_losses
from doppelkit_lora.train.packing import IGNORE_INDEX, collate, pack


def _tiny_llama(attn: str):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        attn_implementation=attn,
    )
    return LlamaForCausalLM(config).eval()


def _example(length: int, prompt: int, seed: int) -> Rendered:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 97, (length,), generator=g).tolist()
    return Rendered(input_ids=ids, labels=[IGNORE_INDEX] * prompt + ids[prompt:])


def _example_losses(model, rows) -> list[float]:  # type: ignore[no-untyped-def]
    """Mean loss of each example (segment), in packing order."""
    batch = collate(rows, pad_id=0)
    losses = per_token_losses(model, batch)
    out = []
    for i, row in enumerate(rows):
        for start, end in row.segments:
            mask = batch["targets"][i, start:end] != IGNORE_INDEX
            out.append(float(losses[i, start:end][mask].mean()))
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_packed_row_gives_each_example_the_loss_it_has_alone(attn: str) -> None:
    model = _tiny_llama(attn)
    items = [_example(23, 9, 1), _example(17, 4, 2), _example(30, 20, 3), _example(9, 3, 4)]
    packed = pack(items, row_len=64)
    assert len(packed) < len(items), "several examples share a row"
    alone = [pack([item], row_len=64)[0] for item in items]
    with torch.no_grad():
        packed_losses = _example_losses(model, packed)
        alone_losses = {len(r): _example_losses(model, [r])[0] for r in alone}
    order = [end - start for row in packed for start, end in row.segments]
    for length, loss in zip(order, packed_losses, strict=True):
        assert loss == pytest.approx(alone_losses[length], abs=1e-5)


def test_packing_fills_rows_without_overflow_and_keeps_labels() -> None:
    items = [_example(n, n // 2, n) for n in (50, 40, 30, 20, 10, 5, 60, 3)]
    rows = pack(items, row_len=64)
    assert all(len(row) <= 64 for row in rows)
    assert sum(len(row) for row in rows) == sum(len(i.input_ids) for i in items)
    # Each segment's targets are its own labels shifted by one, ending in IGNORE_INDEX.
    by_len = {len(i.input_ids): i for i in items}
    for row in rows:
        for start, end in row.segments:
            item = by_len[end - start]
            assert row.targets[start:end] == [*item.labels[1:], IGNORE_INDEX]
            assert row.position_ids[start:end] == list(range(end - start))
    with pytest.raises(ValueError, match="does not fit"):
        pack([_example(70, 10, 0)], row_len=64)
