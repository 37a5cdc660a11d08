"""Reading a published adapter for serving: local safetensors under home, nothing else.

``PeftModel.from_pretrained`` / ``load_adapter`` fall back to ``adapter_model.bin`` (a pickle,
run by ``torch.load``) and then to a Hub download when a local file is missing. The engine
therefore never hands PEFT a path: it checks the directory here, reads ``adapter_config.json``
as JSON and the weights with ``safetensors``, and gives PEFT the config and tensors.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppelkit.artifacts import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PublishedAdapter
from doppelkit.errors import UserError
from doppelkit.home import Home

PICKLE_WEIGHTS = ("adapter_model.bin", "pytorch_model.bin", "adapter_model.pt")


class UnsafeAdapterError(UserError):
    """An adapter that could only be loaded unsafely: pickle weights, or files outside home."""


@dataclass(frozen=True)
class AdapterIdentity:
    """What tells two published adapters apart, beyond the version name.

    A persona's directory can be deleted and retrained, so ``v1`` may name different weights
    over time: the manifest's creation time and the weights file's size and mtime catch that
    without hashing megabytes on every request.
    """

    version: str
    created: str
    weights_size: int
    weights_mtime_ns: int


@dataclass(frozen=True)
class AdapterFiles:
    published: PublishedAdapter
    config_path: Path
    weights_path: Path
    identity: AdapterIdentity


def checked_files(home: Home, published: PublishedAdapter) -> AdapterFiles:
    """The adapter's two files, refusing pickle-only adapters and anything outside ``home``."""
    directory = published.path
    if not home.contains(directory):
        raise UnsafeAdapterError(
            f"refusing to load the adapter at {directory}: it resolves outside home ({home.root})"
        )
    weights = directory / ADAPTER_WEIGHTS
    config = directory / ADAPTER_CONFIG
    if not weights.is_file():
        pickles = [name for name in PICKLE_WEIGHTS if (directory / name).exists()]
        found = f" (found {', '.join(pickles)}: pickle files are never loaded)" if pickles else ""
        raise UnsafeAdapterError(
            f"the adapter at {directory} has no {ADAPTER_WEIGHTS}{found}; "
            "retrain the persona to publish safetensors weights"
        )
    for path in (weights, config):
        if not home.contains(path):
            raise UnsafeAdapterError(f"refusing to load {path}: it resolves outside home ({home.root})")
    stat = weights.stat()
    identity = AdapterIdentity(
        version=published.version,
        created=published.manifest.created.isoformat(),
        weights_size=stat.st_size,
        weights_mtime_ns=stat.st_mtime_ns,
    )
    return AdapterFiles(published, config, weights, identity)


def read_adapter(files: AdapterFiles, device: Any) -> tuple[Any, dict[str, Any]]:
    """(PEFT config, tensors) of a checked adapter, read without pickle and without the Hub."""
    from peft import PeftConfig
    from safetensors.torch import load_file

    try:
        raw = json.loads(files.config_path.read_text(encoding="utf-8"))
        config = PeftConfig.from_peft_type(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"cannot read {files.config_path}: {exc}") from None
    config.inference_mode = True
    weights = load_file(str(files.weights_path), device=str(device))
    return config, weights


def serve_offline() -> None:
    """Set ``HF_HUB_OFFLINE=1``: serving never downloads anything.

    ``huggingface_hub`` reads the variable once at import, so an already imported module is
    switched too.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
