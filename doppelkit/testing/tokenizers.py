"""Small Hugging Face tokenizers built in milliseconds, without any download, for tests.

``build_test_tokenizer()`` trains a byte-level BPE on a few sentences and wraps it in
``transformers.PreTrainedTokenizerFast``: every string round-trips exactly through
encode/decode, so tests can compare decoded text byte for byte. Variants:

* ``chat_template=True`` — a ChatML template (``<|im_start|>``/``<|im_end|>``, EOS
  ``<|im_end|>``, like Qwen instruct models);
* ``add_bos=True`` — the tokenizer adds ``<s>`` in front by default (like Llama).

transformers and tokenizers are imported inside the function: importing this module is free.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

TEST_CORPUS = (
    "Hello there! Did the deploy go out yet? I think we should ship it on Friday.",
    "Ann: can you review my PR? Bob: sure, give me five minutes.",
    "The model trains on your messages and answers like you do :tada:",
    "We're hiring engineers & designers. See https://example.com/jobs for <details>.",
    "Numbers 0123456789, punctuation .,;:!?()[]{}'\"-_/\\@#$%^&*+=~`|<> and more text.",
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_test_tokenizer(
    *, chat_template: bool = False, add_bos: bool = False, corpus: Iterable[str] = TEST_CORPUS
) -> Any:
    """A tiny byte-level BPE ``PreTrainedTokenizerFast`` with ``<s>``/``</s>``/``<pad>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus), trainer)
    if add_bos:
        bos_id = tokenizer.token_to_id("<s>")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
        )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="<|im_end|>" if chat_template else "</s>",
        pad_token="<pad>",
        clean_up_tokenization_spaces=False,
    )
    if chat_template:
        wrapped.chat_template = CHATML_TEMPLATE
    return wrapped
