"""One reply from a model as it is (base, or with its active adapter): the persona report's
samples during training. Serving uses :mod:`doppelkit_lora.serve.engine`; both share the decoding
loop (:mod:`doppelkit_lora.decoding.loop`) and the reply cutting (:mod:`doppelkit.reply_text`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from doppelkit.models import ChatMessage
from doppelkit.reply_text import ReplyCutter
from doppelkit.serving import stop_token_ids
from doppelkit_lora.decoding.loop import Row, Sampling, decode

__all__ = ["generate_reply", "served_cutter", "stop_token_ids"]


def generate_reply(
    model: Any,
    tokenizer: Any,
    formatter: Any,
    prompt: Sequence[ChatMessage],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.7,
    max_prompt_tokens: int | None = None,
    top_p: float = 0.95,
    top_k: int = 50,
    repetition_penalty: float = 1.1,
    cutter: ReplyCutter | None = None,
) -> str:
    """The reply text to ``prompt`` (chat messages), rendered by ``formatter`` as in training.

    ``cutter`` ends the reply where serving would (:func:`served_cutter`); by default only at
    the end of the turn. Sampling follows torch's global random state (``torch.manual_seed``
    before the call makes it repeatable).
    """
    import torch

    text = formatter.render_prompt(list(prompt), tokenizer)
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    if max_prompt_tokens is not None:
        ids = ids[-max_prompt_tokens:]
    sampling = Sampling(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        max_new_tokens=max_new_tokens,
    )
    seed = int(torch.randint(0, 2**62, (1,)))
    row = Row(ids, None, sampling, seed, on_token=lambda _token: False, on_done=lambda: None)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        decode(model, [row], pad_id=_pad_id(tokenizer), stop_ids=stop_token_ids(tokenizer), device=device)
    finally:
        model.train(was_training)
    reply = tokenizer.decode(row.generated, skip_special_tokens=True)
    return (cutter or ReplyCutter()).update(reply, finished=True).text


_SPEAKER = re.compile(r"^([^\n:]{1,64}):[ \t]", re.M)


def served_cutter(prompt: Sequence[ChatMessage], persona_label: str) -> ReplyCutter:
    """The cut the engine makes when serving: the persona's own ``Name:`` tag removed, the reply
    ended where another speaker of the conversation would start (the ``Name:`` lines of its
    user turns), so a sample in the persona report is exactly what would be posted."""
    speakers = {name.strip() for m in prompt if m.role == "user" for name in _SPEAKER.findall(m.content)}
    return ReplyCutter((), speakers, persona_label)


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)
