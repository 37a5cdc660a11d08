"""``+backend=modal`` composes a validated ``backend.*``; mistakes are named before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from modal_testkit import validated

from doppelkit.errors import ConfigError
from doppelkit.testing import run_cli
from doppelkit_modal.backend import ModalBackend
from doppelkit_modal.config import GPU_TYPES, ModalConfig, check_gpu


def test_plus_backend_modal_validates_with_its_defaults() -> None:
    run = validated(["+backend=modal"])
    selection = run["backend"]
    assert selection.component is ModalBackend and selection.plugin == "modal"
    config = selection.config
    assert isinstance(config, ModalConfig)
    assert (config.train_gpu, config.serve_gpu) == ("H100", "L40S")
    assert config.min_containers == 0, "scale to zero by default"
    assert config.web_secrets == ["doppelkit-slack"] and config.secrets == []
    assert (config.volume, config.mount_path, config.download) == ("doppelkit-home", "/doppelkit-home", False)


def test_cfg_job_prints_every_backend_key(tmp_path: Path) -> None:
    shown = run_cli(["--cfg", "job", "+backend=modal", "backend.train_gpu=a100-80gb"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    section = shown.stdout.split("backend:\n", 1)[1]
    for key in ModalConfig.model_fields:
        assert f"\n  {key}:" in "\n" + section, key
    assert "train_gpu: a100-80gb" in section  # shown as given; validation upper-cases it
    assert (
        validated(["+backend=modal", "backend.train_gpu=a100-80gb"])["backend"].config.train_gpu
        == "A100-80GB"
    )


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("backend.train_gpu=H1000", "backend.train_gpu: Value error, unknown GPU 'H1000'"),
        ("backend.serve_gpu=L40S:9", "unknown GPU 'L40S:9'"),
        ("backend.retries.max_delay=90", "backend.retries.max_delay"),
        ("backend.scaledown_window=1", "backend.scaledown_window"),
        ("backend.train_timeout=100000", "backend.train_timeout"),
        ("backend.mount_path=/root", "backend.mount_path"),
        ("backend.mount_path=relative/dir", "backend.mount_path"),
        ("backend.app_name='two words'", "backend.app_name"),
        ("backend.web_secrets=[ok,'not ok']", "not Modal Secret names: 'not ok'"),
        ("backend.python_version=3", "backend.python_version"),
    ],
)
def test_bad_values_are_named(override: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace("'", "'")):
        validated(["+backend=modal", override])


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    result = run_cli(
        ["validate", "+backend=modal", "backend.train_gpus=T4", f"home={tmp_path}"], cwd=tmp_path
    )
    assert result.returncode == 2
    assert "did you mean backend.train_gpu?" in result.stderr and "Traceback" not in result.stderr


def test_gpus_are_checked_and_written_as_modal_writes_them() -> None:
    assert check_gpu(None) is None
    assert check_gpu("h100:2") == "H100:2" and check_gpu("a10g") == "A10G" and check_gpu(" b200+ ") == "B200+"
    for gpu in GPU_TYPES:
        assert check_gpu(gpu) == gpu
    for bad in ("H100:0", "H100:9", "TPU", "H100x2", ""):
        with pytest.raises(ValueError, match="unknown GPU"):
            check_gpu(bad)


def test_containers_bounds_are_consistent() -> None:
    with pytest.raises(ValueError, match="max_containers"):
        ModalConfig(min_containers=3, max_containers=2)
    config = ModalConfig(train_gpu=None, region=[])
    assert (config.train_device, config.serve_device, config.region) == ("cpu", "cuda", None)


def test_validate_without_the_plugin_names_the_extra(tmp_path: Path) -> None:
    blocked = run_cli(
        ["validate", "+backend=modal", f"home={tmp_path}"],
        cwd=tmp_path,
        env={"DOPPELKIT_BLOCK_PLUGINS": "modal"},
    )
    assert blocked.returncode == 2
    assert 'pip install "doppelkit[modal]"' in blocked.stderr and "not released" not in blocked.stderr
