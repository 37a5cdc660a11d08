"""Batched, incremental decoding of several prompts at once, each with its own adapter.

Why our own loop instead of ``model.generate``: one forward pass serves rows for different
persona adapters (PEFT's ``adapter_names=``) *and* every row streams its tokens as they come,
stops on its own (EOS, a stop the caller detects, its token limit) and leaves the batch without
holding the others back. ``generate`` offers mixed adapters or a streamer for one row, not both.

Sampling is per row with the row's own random generator: a request seeded with ``engine.seed``
gives the same reply whether it ran alone or beside other requests, and greedy decoding
(``temperature=0``) is exactly argmax.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from doppelkit.serving import GenerationConfig, fit_prompt
from doppelkit_lora.decoding.mixed_lora import StackedLora, supported

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@functools.cache
def cache_argument() -> str:
    """The KV cache's name in a model's forward and output: ``cache`` since transformers renamed
    ``past_key_values`` (the old name warns on every generation, and goes in 5.40)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return (
        "cache"
        if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
        else "past_key_values"
    )


@dataclass(frozen=True)
class Sampling:
    """How tokens are picked: ``temperature == 0`` means greedy."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.1
    max_new_tokens: int = 200

    @classmethod
    def from_config(cls, config: GenerationConfig) -> Sampling:
        return cls(
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            repetition_penalty=config.repetition_penalty,
            max_new_tokens=config.max_new_tokens,
        )


@dataclass
class Row:
    """One prompt to continue.

    ``on_token(token_id)`` sees each generated token (never a stop token) and returns True to
    stop the row; ``on_done()`` is called once, when the row has finished (stop token, stopped
    by ``on_token``, or its token limit).
    """

    prompt_ids: list[int]
    adapter: str | None  # None: whatever adapter state the model is in (no adapter_names)
    sampling: Sampling
    seed: int
    on_token: Callable[[int], bool]
    on_done: Callable[[], None]
    generated: list[int] = field(default_factory=list)


def pick_token(logits: Any, history: Sequence[int], sampling: Sampling, generator: Any) -> int:
    """The next token from one row's logits (1-D float tensor), following ``sampling``."""
    import torch

    scores = logits.float()
    if sampling.repetition_penalty != 1.0 and history:
        # CTRL-style penalty, as transformers applies it: shrink the scores of seen tokens.
        seen = torch.tensor(sorted(set(history)), device=scores.device)
        picked = scores[seen]
        scores[seen] = torch.where(
            picked < 0, picked * sampling.repetition_penalty, picked / sampling.repetition_penalty
        )
    if sampling.temperature == 0:
        return int(scores.argmax())
    scores = scores / sampling.temperature
    if 0 < sampling.top_k < scores.numel():
        threshold = torch.topk(scores, sampling.top_k).values[-1]
        scores = scores.masked_fill(scores < threshold, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative - ordered.softmax(-1) >= sampling.top_p  # keep the smallest set reaching top_p
        scores[order[drop]] = float("-inf")
    probs = scores.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def decode(
    model: Any,
    rows: list[Row],
    *,
    pad_id: int,
    stop_ids: frozenset[int],
    device: Any,
    max_positions: int | None = None,
) -> None:
    """Generate for all ``rows`` together until each has stopped; results go to ``on_token``.

    Prompts are left-padded into one batch; finished rows are dropped from the batch (and its
    KV cache) so the rest run at full speed. ``max_positions`` truncates over-long prompts from
    the left, leaving room for each row's ``max_new_tokens``.
    """
    import torch

    if not rows:
        return
    prompts = [fit_prompt(row.prompt_ids, max_positions, row.sampling.max_new_tokens) for row in rows]
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    generators = [torch.Generator(device="cpu").manual_seed(row.seed) for row in rows]
    live = list(range(len(rows)))  # indices into rows of the batch's current members
    cache = None
    cache_name = cache_argument()
    step_ids, step_positions = input_ids, positions
    adapters = sorted({row.adapter for row in rows}, key=lambda name: name or "")
    named = [name for name in adapters if name is not None]
    mixed = bool(named)  # PEFT's adapter_names: always correct, slow when mixing (see mixed_lora)
    stacked: StackedLora | None = None
    if len(adapters) == 1 and named and hasattr(model, "set_adapter"):
        # One adapter for the whole batch: PEFT's ordinary path. ``adapter_names`` would add
        # forward hooks on every LoRA layer at every step, for nothing.
        model.set_adapter(named[0])
        mixed = False
    elif named and supported(model, named):
        slot_of_row = torch.tensor([adapters.index(row.adapter) for row in rows], device=device)
        stacked = StackedLora(model, adapters, slot_of_row)
        mixed = False
    with torch.inference_mode(), stacked.applied() if stacked else contextlib.nullcontext():
        while live:
            per_row: dict[str, Any] = {}
            if mixed:
                per_row["adapter_names"] = [rows[i].adapter or BASE_ADAPTER for i in live]
            out = model(
                input_ids=step_ids,
                attention_mask=attention,
                position_ids=step_positions,
                use_cache=True,
                **{cache_name: cache},
                **per_row,
            )
            cache = out[cache_name]
            last_logits = out.logits[:, -1, :].to("cpu")
            next_ids: list[int] = []
            keep: list[int] = []
            for slot, index in enumerate(live):
                row = rows[index]
                token = pick_token(
                    last_logits[slot], [*row.prompt_ids, *row.generated], row.sampling, generators[index]
                )
                next_ids.append(token)
                if token in stop_ids:
                    row.on_done()
                    continue
                row.generated.append(token)
                if row.on_token(token) or len(row.generated) >= row.sampling.max_new_tokens:
                    row.on_done()
                    continue
                keep.append(slot)
            if not keep:
                break
            if len(keep) < len(live):
                index_tensor = torch.tensor(keep, device=device)
                cache.batch_select_indices(index_tensor)
                if stacked is not None:
                    slot_of_row = slot_of_row[index_tensor]
                    stacked.select(slot_of_row)
                attention = attention[index_tensor]
                step_positions = step_positions[index_tensor]
                next_ids = [next_ids[slot] for slot in keep]
                live = [live[slot] for slot in keep]
            step_ids = torch.tensor(next_ids, device=device)[:, None]
            attention = torch.cat([attention, attention.new_ones((len(live), 1))], dim=1)
            step_positions = step_positions[:, -1:] + 1
