"""Prompt text → token ids and labels, and the text templates the formatters render.

Tokenizers are duck-typed Hugging Face tokenizers (``encode``, ``eos_token_id``, …); nothing
here imports transformers.

The boundary between prompt and reply is exact because they are tokenised separately:
``input_ids = encode(prompt) + encode(reply) + [eos]``. Serving tokenises the same prompt text
with ``add_special_tokens=False`` too: the prompt text already carries every special token
(a BOS the tokenizer would add is written into the text, see :func:`bos_prefix`).
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

from doppelkit.interfaces import Rendered

IGNORE_INDEX = -100  # label value the loss skips (PyTorch CrossEntropyLoss's ignore_index)

_JINJA = ImmutableSandboxedEnvironment(
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=StrictUndefined
)


def is_jinja(template: str) -> bool:
    """A template is Jinja when it uses ``{{ }}`` or ``{% %}``; otherwise ``str.format``."""
    return "{{" in template or "{%" in template


@functools.lru_cache(maxsize=32)
def _compiled(template: str) -> Template:
    return _JINJA.from_string(template)


def fill(template: str, **values: Any) -> str:
    """Render ``template`` (Jinja, sandboxed, or format-string) with ``values``."""
    if is_jinja(template):
        return _compiled(template).render(**values)
    return template.format(**values)


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def eos_token_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ValueError(
            "the tokenizer has no eos_token_id; doppelkit appends EOS to every reply so the "
            "model learns to stop. Set tokenizer.eos_token before training."
        )
    return int(eos)


def eos_token(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "eos_token", None) or "")


def bos_prefix(tokenizer: Any) -> str:
    """The BOS text to start a prompt with: the tokenizer's BOS token when it adds one by
    default (Llama-style), else ``""`` (GPT-2/Qwen-style tokenizers add none)."""
    bos, bos_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
    if not bos or bos_id is None:
        return ""
    ids = tokenizer.encode("a", add_special_tokens=True)
    return str(bos) if ids and ids[0] == bos_id else ""


def render_reply(prompt: str, reply: str, tokenizer: Any, *, train_on_inputs: bool) -> Rendered:
    """Token ids of ``prompt + reply + EOS``; labels mask the prompt unless ``train_on_inputs``."""
    prompt_ids = encode(tokenizer, prompt)
    reply_ids = [*encode(tokenizer, reply), eos_token_id(tokenizer)]
    prompt_labels = prompt_ids if train_on_inputs else [IGNORE_INDEX] * len(prompt_ids)
    return Rendered(input_ids=prompt_ids + reply_ids, labels=[*prompt_labels, *reply_ids])
