"""Reading a published adapter for serving: local safetensors under home, nothing else.

The checks (:func:`doppelkit.artifacts.checked_files`) are the core's, shared by every engine.

``PeftModel.from_pretrained`` / ``load_adapter`` fall back to ``adapter_model.bin`` (a pickle,
run by ``torch.load``) and then to a Hub download when a local file is missing. The engine
therefore never hands PEFT a path: it checks the directory here, reads ``adapter_config.json``
as JSON and the weights with ``safetensors``, and gives PEFT the config and tensors.
"""

from __future__ import annotations

import json
from typing import Any

from doppelkit.artifacts import (
    PICKLE_WEIGHTS,
    AdapterFiles,
    AdapterIdentity,
    UnsafeAdapterError,
    checked_files,
)
from doppelkit.errors import UserError
from doppelkit.serving import serve_offline

__all__ = [
    "PICKLE_WEIGHTS",
    "AdapterFiles",
    "AdapterIdentity",
    "UnsafeAdapterError",
    "checked_files",
    "read_adapter",
    "serve_offline",
]


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
