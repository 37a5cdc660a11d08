"""``doppelkit +backend=process``: the whole pipeline with each step in its own process gives
the same dataset as the in-process run, and an adapter the engine serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from doppelkit import artifacts
from doppelkit.home import Home
from doppelkit.testing import run_cli
from doppelkit_lora.testing import SECONDS_TO_TRAIN

SMALL = ["persona.user=maya", *SECONDS_TO_TRAIN]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # a model this small trains fastest on one thread


def dataset_of(home: Path) -> bytes:
    [path] = list(Home.at(home).root.glob("datasets/*/*/dataset.jsonl"))
    return path.read_bytes()


@pytest.mark.slow
def test_each_step_in_its_own_process_gives_the_same_dataset_and_a_served_adapter(tmp_path: Path) -> None:
    local, spawned = tmp_path / "local", tmp_path / "process"
    assert run_cli([*SMALL, f"home={local}"], env=ONE_THREAD, timeout=300).returncode == 0
    result = run_cli([*SMALL, f"home={spawned}", "+backend=process"], env=ONE_THREAD, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "published v1" in result.stderr
    assert "Warning" not in result.stderr and "deprecated" not in result.stderr, "no library warnings"

    assert dataset_of(spawned) == dataset_of(local), "byte-identical dataset"
    [manifest] = artifacts.published_personas(Home.at(spawned))
    [local_manifest] = artifacts.published_personas(Home.at(local))
    assert (manifest.persona_id, manifest.version, manifest.dataset_hash) == (
        local_manifest.persona_id,
        local_manifest.version,
        local_manifest.dataset_hash,
    )
    files = sorted(
        p.name for p in (Home.at(spawned).adapters(manifest.team, manifest.persona_id) / "v1").iterdir()
    )
    assert files == ["adapter_config.json", "adapter_model.safetensors", "manifest.json"]

    chat = run_cli(
        ["chat", "persona.user=maya", f"home={spawned}", "+backend=process", "engine.max_new_tokens=4"],
        input="hi\n",
        env=ONE_THREAD,
        timeout=300,
    )
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert chat.stdout.startswith("maya: "), chat.stdout


def test_a_step_that_fails_as_the_user_exits_2_with_its_message(tmp_path: Path) -> None:
    result = run_cli(["+backend=process", "persona.user=nobody-like-this", f"home={tmp_path}"], timeout=120)
    assert result.returncode == 2
    assert "nobody-like-this" in result.stderr and "Traceback" not in result.stderr
