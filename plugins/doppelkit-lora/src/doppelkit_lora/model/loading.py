"""Loading the base model and tokenizer: a hub id, a local directory, or the tiny model.

Hub ids go through the standard ``AutoModelForCausalLM.from_pretrained`` path, so the Hugging
Face cache and ``HF_HUB_OFFLINE=1`` behave as everywhere else. When weights cannot be found the
error says how to get them or how to point ``model.name`` at a local directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppelkit.errors import UserError
from doppelkit.home import Home
from doppelkit.settings import ModelConfig
from doppelkit_lora.model.tiny import (
    TINY_NAME,
    TinyCorpus,
    TinyModelConfig,
    ensure_tiny_base,
)

__all__ = [
    "LoadedBase",
    "hub_offline",
    "load_base",
    "load_pretrained",
    "missing_weights_message",
    "quantization_config",
    "resolve_dtype",
]


@dataclass
class LoadedBase:
    model: Any
    tokenizer: Any
    name: str  # model.name as configured ("tiny", a hub id, a directory)
    revision: str | None  # hub revision, or the tiny model's cache key
    location: str  # what from_pretrained was given
    dtype: str


def resolve_dtype(config: ModelConfig, device: str) -> Any:
    """fp32 on CPU; bf16 on CUDA when the GPU supports it (else fp32); explicit dtypes win."""
    import torch

    if config.dtype != "auto":
        return getattr(torch, config.dtype)
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def hub_offline() -> bool:
    try:
        from huggingface_hub import constants
    except ImportError:
        return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    return bool(constants.is_offline_mode())


def missing_weights_message(name: str, detail: str) -> str:
    how = (
        f"download it once while online (`hf download {name}`) and run with HF_HUB_OFFLINE=1, "
        f"or set model.name to a local directory holding its config, tokenizer and weights "
        f"(e.g. model.name=/models/{name.rsplit('/', 1)[-1]})"
    )
    if hub_offline():
        return (
            f"model.name={name!r}: the weights are not in the local Hugging Face cache and "
            f"HF_HUB_OFFLINE is set. To fix: {how}. ({detail})"
        )
    return (
        f"model.name={name!r} could not be loaded: {detail}. To fix: check the name (and "
        f"licence access for gated models), or {how}."
    )


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else is meant as a directory."""
    return name.startswith((".", "~", "/")) or name.count("/") > 1 or "\\" in name


def quantization_config(config: ModelConfig, device: str, load_in_4bit: bool) -> Any:
    """QLoRA's 4-bit NF4 base, with clear errors when it cannot work here."""
    if not load_in_4bit:
        return None
    if not device.startswith("cuda"):
        raise UserError(
            "trainer.load_in_4bit=true (QLoRA) needs a CUDA GPU, but this run is on "
            f"{device}. Set trainer.load_in_4bit=false, or run on a GPU machine (+backend=cuda)."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(
            "trainer.load_in_4bit=true (QLoRA) needs bitsandbytes, which is not installed. "
            "Install it with: pip install bitsandbytes (Linux, CUDA) — or set trainer.load_in_4bit=false."
        ) from None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=resolve_dtype(config, device) if config.dtype != "float32" else torch.float32,
    )


def load_pretrained(
    location: str, config: ModelConfig, device: str, revision: str | None, *, load_in_4bit: bool = False
) -> tuple[Any, Any, Any]:
    """(model, tokenizer, dtype) from a hub id or a directory, placed on ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # doppelkit shows its own progress; no per-shard bars
    dtype = resolve_dtype(config, device)
    quantization = quantization_config(config, device, load_in_4bit)
    kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": config.trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            location,
            dtype=dtype,
            quantization_config=quantization,
            device_map={"": device} if quantization is not None else None,
            **kwargs,
        )
    except OSError as exc:
        raise UserError(missing_weights_message(config.name, _first_line(exc))) from None
    except ValueError as exc:
        if type(exc).__name__ == "HFValidationError":  # not a valid repo id, and no such directory
            raise UserError(missing_weights_message(config.name, _first_line(exc))) from None
        raise
    if quantization is None:
        model.to(device)  # type: ignore[arg-type]  # transformers' stubs type .to() for models only
    if tokenizer.pad_token_id is None:  # many base models ship without one; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, dtype


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_base(
    config: ModelConfig,
    *,
    home: Home,
    device: str,
    corpus: Callable[[], TinyCorpus],
    console: Any = None,
    tiny_config: TinyModelConfig | None = None,
    load_in_4bit: bool = False,
) -> LoadedBase:
    """The configured base model on ``device``; the tiny model is found (or built, shaped by
    ``tiny_config``) from ``corpus()``."""
    if config.name == TINY_NAME:
        if load_in_4bit:
            raise UserError("trainer.load_in_4bit=true is for real models; the tiny model is already small.")
        tiny = ensure_tiny_base(home, tiny_config, corpus(), device=device, console=console)
        model, tokenizer, dtype = load_pretrained(str(tiny.path), config, device, revision=None)
        return LoadedBase(model, tokenizer, TINY_NAME, tiny.key, str(tiny.path), _dtype_name(dtype))
    location = config.name
    local = Path(config.name).expanduser()
    if local.is_dir():
        location = str(local.resolve())
    elif _looks_like_path(config.name):
        raise UserError(f"model.name={config.name!r} looks like a directory, but there is none at {local}.")
    model, tokenizer, dtype = load_pretrained(
        location, config, device, config.revision, load_in_4bit=load_in_4bit
    )
    return LoadedBase(model, tokenizer, config.name, config.revision, location, _dtype_name(dtype))


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")
