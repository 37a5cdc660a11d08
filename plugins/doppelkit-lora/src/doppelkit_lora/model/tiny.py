"""``model=tiny``: a small Llama-architecture model and tokenizer built here, downloading nothing.

The tokenizer (byte-level BPE) is trained on the team's own text and the base model is briefly
pretrained on it (plain text, every person), so generations are readable words of this team and
a persona adapter has something to specialise. The text is the workspace corpus ``ingest``
writes (train-split threads of everyone, see :mod:`doppelkit.corpus`), so every persona of a
team trains against the *same* base and one engine serves them all.

The result is cached under ``home/cache/tiny/<key>`` where ``key`` hashes the team, the
corpus's content hash, the tiny config and this builder's version: the same workspace and
config reuse the same base (without reading the corpus again); anything else builds a new one.
The key is recorded in each adapter manifest (``model_revision``) so an engine can load
exactly the base an adapter was trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from doppelkit.artifacts import TINY_BASE
from doppelkit.errors import UserError
from doppelkit.home import Home, atomic_dir, write_json
from doppelkit_lora.model.progress import progress_bar

BUILDER_VERSION = 2  # bump when the build recipe changes, so old caches are not reused
TINY_NAME = TINY_BASE  # the model.name that means: built here, under home/cache/tiny
BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)
# Each turn is "<|role|>\n{content}<|end|>\n"; the generation prompt is "<|assistant|>\n", so a
# prompt is always a prefix of the full conversation (what the chat formatter relies on).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
BLOCK_LEN = 256  # pretraining window (tokens)
MARKER = "tiny.json"  # written last into a tiny base's directory: the build is complete


class TinyModelConfig(BaseModel):
    """``trainer.tiny.*``: shape of the locally built tiny model (``model=tiny``); nothing is
    downloaded. Part of the base's cache key: change a value and a new base is built."""

    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(2048, ge=260, le=65536)
    hidden_size: int = Field(128, ge=16)
    intermediate_size: int = Field(344, ge=16)
    num_hidden_layers: int = Field(4, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(2, ge=1)
    max_position_embeddings: int = Field(1024, ge=64)
    pretrain_steps: int = Field(200, ge=0, description="brief pretraining on the workspace's own text")
    pretrain_batch_size: int = Field(16, ge=1)
    pretrain_learning_rate: float = Field(3e-3, gt=0)
    seed: int = 0


@dataclass(frozen=True)
class TinyBase:
    path: Path
    key: str
    built: bool  # False when reused from the cache


@dataclass(frozen=True)
class TinyCorpus:
    """The text a tiny base learns from, named by a content hash so that a cached base is
    found without reading (or still having) the text."""

    team: str
    sha256: str
    origin: str  # where the text came from, recorded in the base's marker file
    read: Callable[[], Sequence[str]]


def texts_sha256(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode() + b"\x00")
    return digest.hexdigest()


def tiny_config(config: TinyModelConfig | None) -> TinyModelConfig:
    return config if config is not None else TinyModelConfig()


def cache_key(corpus: TinyCorpus, config: TinyModelConfig) -> str:
    digest = hashlib.sha256()
    digest.update(f"tiny-builder-v{BUILDER_VERSION}\n{corpus.team}\n{corpus.sha256}\n".encode())
    digest.update(config.model_dump_json().encode())
    return digest.hexdigest()[:20]


def tiny_dir(home: Home, key: str) -> Path:
    """Where the tiny base with this key lives (the engine's way back to an adapter's base)."""
    if not key.isalnum():
        raise ValueError(f"invalid tiny model key {key!r}")
    return home.cache / "tiny" / key


def is_built(path: Path) -> bool:
    return (path / MARKER).is_file()


def tiny_base_location(home: Home, model_revision: str | None) -> str:
    """The folder of the tiny base an adapter was trained on: the manifest's ``model_revision``
    is its cache key, and the base is that exact folder under ``home/cache/tiny``."""
    if not model_revision:
        raise UserError("this adapter's manifest names the tiny base without its cache key")
    path = tiny_dir(home, model_revision)
    if not is_built(path):
        raise UserError(
            f"the tiny base model this adapter was trained on ({path}) is gone; retrain with "
            "`doppelkit train` to rebuild it"
        )
    return str(path)


def team_bases(home: Home, team: str) -> list[Path]:
    """The tiny bases built from this team's corpus (their marker names the team)."""
    root = home.cache / "tiny"
    if root.is_symlink() or not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        marker = folder / MARKER
        if folder.is_symlink() or marker.is_symlink() or not marker.is_file():
            continue
        try:
            built_for = json.loads(marker.read_text(encoding="utf-8")).get("team")
        except (OSError, ValueError, AttributeError):
            continue
        if built_for == team:
            found.append(folder)
    return found


def ensure_tiny_base(
    home: Home,
    config: TinyModelConfig | None,
    corpus: TinyCorpus,
    device: str = "cpu",
    console: Any = None,
) -> TinyBase:
    """The cached tiny base for this corpus and config, building it (atomically) if needed."""
    config = tiny_config(config)
    key = cache_key(corpus, config)
    final = tiny_dir(home, key)
    if is_built(final):
        return TinyBase(final, key, built=False)
    texts = corpus.read()
    if not texts:
        raise ValueError("the tiny model needs some text to learn from; the workspace has none")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar covers the build
    try:
        with atomic_dir(final) as staging:
            tokenizer = train_tokenizer(texts, config)
            tokenizer.save_pretrained(staging)
            model = build_model(tokenizer, config)
            stats = pretrain(model, tokenizer, texts, config, device, console)
            model.save_pretrained(staging, safe_serialization=True)
            write_json(
                staging / MARKER,
                {
                    "key": key,
                    "team": corpus.team,
                    "corpus_sha256": corpus.sha256,
                    "corpus": corpus.origin,
                    "config": config.model_dump(),
                    "texts": len(texts),
                    **stats,
                },
            )
    except FileExistsError:
        if not is_built(final):  # not a concurrent build that finished first
            raise
    return TinyBase(final, key, built=True)


def train_tokenizer(texts: Sequence[str], config: TinyModelConfig) -> Any:
    """A byte-level BPE tokenizer (any text encodes) with eos/pad and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=config.max_position_embeddings,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer: Any, config: TinyModelConfig) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(model_config)


def pretrain(
    model: Any, tokenizer: Any, texts: Sequence[str], config: TinyModelConfig, device: str, console: Any
) -> dict[str, Any]:
    """Brief causal-LM pretraining on the texts, each ended by eos, as random windows."""
    import torch
    import torch.nn.functional as F

    stream: list[int] = []
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(config.seed)).tolist()
    for i in order:
        stream.extend(tokenizer(texts[i], add_special_tokens=False)["input_ids"])
        stream.append(tokenizer.eos_token_id)
    block = min(BLOCK_LEN, config.max_position_embeddings, len(stream) - 1)
    data = torch.tensor(stream, dtype=torch.long)
    steps = config.pretrain_steps
    if steps == 0 or block < 2:
        return {"pretrain_steps": 0, "tokens": len(stream)}
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.pretrain_learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))),
    )
    generator = torch.Generator().manual_seed(config.seed)
    loss_value = float("nan")
    progress = progress_bar(console, "building the tiny base model")
    with progress:
        task = progress.add_task("pretrain", total=steps, loss=float("nan"), extra="")
        for _ in range(steps):
            starts = torch.randint(0, len(stream) - block, (config.pretrain_batch_size,), generator=generator)
            windows = torch.stack([data[s : s + block + 1] for s in starts.tolist()]).to(device)
            logits = model(input_ids=windows[:, :-1], use_cache=False).logits
            loss = F.cross_entropy(logits.flatten(0, 1).float(), windows[:, 1:].flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = loss.item()
            progress.update(task, advance=1, loss=loss_value)
    model.to("cpu").eval()
    return {"pretrain_steps": steps, "tokens": len(stream), "final_loss": round(loss_value, 4)}


def tokenizer_info(path: Path) -> dict[str, Any]:
    return json.loads((path / MARKER).read_text(encoding="utf-8"))
