"""Tiny engine fixtures any engine's tests can use: a tiny base and persona adapters in seconds.

The base is a randomly initialised tiny Llama (the tiny builder's ``build_model``) with a
*word-level* tokenizer, stored where the tiny builder caches its models: every token decodes
to a whole word, so even a random model's replies are comparable text (a byte-level tokenizer
would make most of them U+FFFD). Adapters are random LoRA weights (``init_lora_weights=False``)
published through the trainer's own artifact API, so an engine reads exactly the layout
training produces. Each seed gives different weights, so personas' greedy replies differ.
Nothing is downloaded.
"""

from __future__ import annotations

import json
import warnings

from doppelkit import artifacts
from doppelkit.home import Home
from doppelkit.models import AdapterManifest, Persona
from doppelkit_lora.model.tiny import (
    BOS,
    CHAT_TEMPLATE,
    EOS,
    MARKER,
    PAD,
    SPECIAL_TOKENS,
    TINY_NAME,
    TinyBase,
    TinyModelConfig,
    build_model,
    tiny_dir,
)

CORPUS = [
    "did the deploy go out? yep shipped it this morning, all green so far",
    "can someone review my PR? on it, give me ten minutes and I'll leave comments",
    "why is CI red again? flaky test again, I'll rerun it",
    "lunch at noon? sure, see you at the usual place",
    "the staging db is slow today, probably the nightly backfill hogging it",
    "who owns the billing service? that's me, what do you need?",
] * 3

BASE_KEY = "enginetest"
UNK = "<|unk|>"

# Smaller than the trainer's test model: engine tests only need distinct, deterministic output.
ENGINE_TINY = TinyModelConfig(
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=256,
    pretrain_steps=60,
    pretrain_batch_size=4,
)


def build_tiny_base(home: Home, shape: TinyModelConfig = ENGINE_TINY, key: str = BASE_KEY) -> TinyBase:
    """A random tiny base with a word-level tokenizer, where the engine looks for tiny bases."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({word for text in CORPUS for word in text.split()} | {"Ann:", "maya:", "erik:"})
    vocab = {token: i for i, token in enumerate([UNK, *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    path = tiny_dir(home, key)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    build_model(tokenizer, shape).save_pretrained(path, safe_serialization=True)
    (path / MARKER).write_text(json.dumps({"key": key}), encoding="utf-8")
    return TinyBase(path, key, built=True)


def publish_random_adapter(
    home: Home, base: TinyBase, persona: Persona, seed: int, rank: int = 4
) -> artifacts.PublishedAdapter:
    """A new version of ``persona``'s adapter with random LoRA weights (seeded)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base.path)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=["q_proj", "v_proj", "o_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' deprecation notices inside peft
        peft_model = get_peft_model(model, config)
    manifest = AdapterManifest(
        version="v0",
        team=persona.team,
        persona_id=persona.id,
        persona_name=persona.label,
        base_model=TINY_NAME,
        model_revision=base.key,
        trainer="lora",
        formatter="chat",
        template_hash="test",
        dataset_hash=f"seed-{seed}",
        doppelkit_version="test",
    )
    return artifacts.publish(
        home,
        persona.team,
        persona.id,
        lambda directory: peft_model.save_pretrained(str(directory), safe_serialization=True),
        manifest,
    )
