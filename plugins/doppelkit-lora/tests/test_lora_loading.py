"""Model loading errors a user can act on; and a plugin import that stays light."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from doppelkit.errors import UserError
from doppelkit.settings import ModelConfig
from doppelkit_lora.model import loading


def test_missing_weights_offline_say_how_to_provide_a_local_path(
    doppelkit_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    config = ModelConfig(name="doppelkit-tests/no-such-model-anywhere")
    with pytest.raises(UserError) as caught:
        loading.load_base(config, home=doppelkit_home, device="cpu", corpus=list)
    message = str(caught.value)
    assert "HF_HUB_OFFLINE" in message
    assert "model.name=" in message and "local directory" in message


def test_a_missing_local_directory_is_named(doppelkit_home, tmp_path) -> None:
    config = ModelConfig(name=str(tmp_path / "models" / "nope"))
    with pytest.raises(UserError, match="looks like a directory"):
        loading.load_base(config, home=doppelkit_home, device="cpu", corpus=list)


def test_qlora_needs_a_gpu(doppelkit_home) -> None:
    config = ModelConfig(name="org/model")
    with pytest.raises(UserError, match="trainer.load_in_4bit=true .* needs a CUDA GPU"):
        loading.quantization_config(config, "cpu", load_in_4bit=True)


def test_dtype_is_fp32_on_cpu() -> None:
    import torch

    assert loading.resolve_dtype(ModelConfig(), "cpu") == torch.float32
    assert loading.resolve_dtype(ModelConfig(dtype="bfloat16"), "cpu") == torch.bfloat16


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = (
        "import sys, doppelkit_lora.plugin as p\n"
        "p.register_trainers(lambda c: None)\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_plugin_says_where_its_tiny_bases_are_and_nothing_else(doppelkit_home) -> None:
    from doppelkit_lora import plugin
    from doppelkit_lora.model.tiny import MARKER, tiny_dir

    assert plugin.locate_base("org/model", "abc", doppelkit_home) is None
    with pytest.raises(UserError, match="retrain"):
        plugin.locate_base("tiny", "abc123", doppelkit_home)  # gone (never built)
    with pytest.raises(UserError, match="without its cache key"):
        plugin.locate_base("tiny", None, doppelkit_home)
    folder = tiny_dir(doppelkit_home, "abc123")
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("{}")
    assert plugin.locate_base("tiny", "abc123", doppelkit_home) == (str(folder), None)
