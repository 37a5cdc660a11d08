"""``doppelkit +backend=modal``: ingest here, train in the train function against the Volume, the
same report and adapter as a local run — bodies run with ``.local()``, a directory as the Volume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from modal_testkit import FAST, PERSONA, TEAM, USER, manifest, overrides, run

from doppelkit.home import Home
from doppelkit.testing import run_cli
from doppelkit_modal.testing import LocalModal

DATASET = f"datasets/{TEAM}/{USER}"
TIMING = {"seconds", "tokens_per_second", "created"}  # the only fields two identical runs may differ in


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING}
    return value


@pytest.mark.slow
def test_the_pipeline_ingests_here_and_trains_on_modal(modal: LocalModal, tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere" / "maya.jsonl"
    result, out = run("run", overrides(modal, home, f"dataset.path={elsewhere}"))

    # The caller printed what a local run prints: the dataset, then the trainer's persona report.
    assert "Dataset for maya" in out and "Persona report — maya" in out and "held-out loss" in out
    assert f"published v1: Modal Volume doppelkit-home, /adapters/{TEAM}/{USER}/v1" in out
    assert result.version == "v1" and result.metrics["train"]["steps"] == 4
    assert modal.calls == ["check_credentials", "upload", "train"]

    # Only the scrubbed dataset, its held-out split, its report and the corpus went up.
    report_name = f"/{DATASET}/dataset.report.json"
    assert modal.uploads[-1] == report_name, "the report, which marks a complete dataset, last"
    assert sorted(modal.uploads) == sorted(
        [f"/{DATASET}/dataset.jsonl", f"/{DATASET}/dataset.eval.jsonl", report_name, *_corpus(modal.uploads)]
    )
    volume = Home.at(modal.volume)
    assert (volume.root / DATASET / "dataset.jsonl").read_bytes() == elsewhere.read_bytes()
    uploaded = json.loads((volume.root / report_name.lstrip("/")).read_text())
    local = json.loads(elsewhere.with_name("maya.report.json").read_text())
    assert uploaded["dataset_path"] == f"{modal.volume}/{DATASET}/dataset.jsonl"
    assert uploaded["corpus_path"].startswith(f"{modal.volume}/cache/corpus/{TEAM}/")
    assert {k: v for k, v in uploaded.items() if not k.endswith("_path")} == {
        k: v for k, v in local.items() if not k.endswith("_path")
    }
    assert not list(modal.volume.rglob("*.zip")), "the raw export never leaves this machine"

    # Published atomically on the Volume, committed; nothing trained lands here without download.
    assert (volume.adapters(TEAM, USER) / "CURRENT").read_text().strip() == "v1"
    assert modal.commits >= 1 and modal.reloads >= 1
    assert not (home / "adapters").exists()


def _corpus(uploads: list[str]) -> list[str]:
    found = [u for u in uploads if u.startswith(f"/cache/corpus/{TEAM}/")]
    assert len(found) == 1
    return found


@pytest.mark.slow
def test_a_local_run_and_a_modal_run_give_the_same_adapter_and_download_serves_here(
    modal: LocalModal, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    run("ingest", [f"persona.user={PERSONA}", f"home={home}"])
    _, local_out = run("train", [f"persona.user={PERSONA}", f"home={home}", *FAST])
    local = Home.at(home)
    shutil.rmtree(local.cache / "tiny")  # the download must bring the base along

    _, out = run("train", overrides(modal, home, "backend.download=true"))

    volume = Home.at(modal.volume)
    on_volume, here = volume.adapters(TEAM, USER) / "v1", local.adapters(TEAM, USER) / "v1"
    assert (
        sorted(p.name for p in on_volume.iterdir())
        == sorted(p.name for p in here.iterdir())
        == [
            "adapter_config.json",
            "adapter_model.safetensors",
            "manifest.json",
        ]
    )
    remote_manifest, local_manifest = manifest(volume, "v1"), manifest(local, "v1")
    assert remote_manifest.keys() == local_manifest.keys()
    assert _without_timing(remote_manifest) == _without_timing(local_manifest)
    # PEFT records the base's path; each run's is the same place under its own home.
    assert _adapter_config(on_volume, volume) == _adapter_config(here, local)
    _assert_same_weights(on_volume, here)

    # backend.download=true: v1 on the Volume became this home's next version, v2.
    assert f"copied v1 (Modal Volume doppelkit-home, /adapters/{TEAM}/{USER}/v1) here as v2" in out
    assert "published v1:" in local_out and f"published v2: {home}/adapters/{TEAM}/{USER}/v2" in out
    assert (local.adapters(TEAM, USER) / "CURRENT").read_text().strip() == "v2"
    assert manifest(local)["version"] == "v2"
    _assert_same_weights(local.adapters(TEAM, USER) / "v2", on_volume)
    assert (local.cache / "tiny" / remote_manifest["model_revision"]).is_dir()

    chat = run_cli(
        ["chat", f"persona.user={PERSONA}", f"home={home}", "engine.max_new_tokens=4", "engine.seed=1"],
        input="hi\n",
        env={"OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert chat.stdout.startswith("maya: ")


def _adapter_config(version: Path, home: Home) -> dict[str, Any]:
    config = json.loads((version / "adapter_config.json").read_text())
    base = Path(config.pop("base_model_name_or_path"))
    config["base (under home)"] = str(base.relative_to(home.root))
    return dict(config)


def _assert_same_weights(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    left = load_file(str(a / "adapter_model.safetensors"))
    right = load_file(str(b / "adapter_model.safetensors"))
    assert left.keys() == right.keys()
    for key in left:
        assert (left[key] - right[key]).abs().max() < 1e-5, key


class Preempted(Exception):
    pass


@pytest.mark.slow
def test_a_failed_run_keeps_the_previous_version_and_the_retry_resumes_from_the_volume(
    modal: LocalModal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import doppelkit_lora.train.trainer as trainer_module

    home = tmp_path / "home"
    args = overrides(modal, home, "trainer.max_steps=6")
    run("run", args)
    volume = Home.at(modal.volume)
    assert manifest(volume)["version"] == "v1"
    commits = modal.commits

    def preempt(name: str) -> None:
        if name == "train:step:5":
            raise Preempted(name)

    monkeypatch.setattr(trainer_module, "crash_point", preempt)
    with pytest.raises(Preempted):
        run("train", args)
    assert (volume.adapters(TEAM, USER) / "CURRENT").read_text().strip() == "v1", "still the previous version"
    assert not (volume.adapters(TEAM, USER) / "v2").exists()
    assert modal.commits == commits + 1, "the failed attempt's checkpoints were committed anyway"
    assert list((volume.state / "checkpoints" / TEAM / USER).glob("*/step-0000004"))

    # Modal's retry runs the same call again: it resumes from the Volume's checkpoint.
    monkeypatch.setattr(trainer_module, "crash_point", lambda name: None)
    _, out = run("train", args)
    assert "resuming from the checkpoint at step 4" in out and "published v2: Modal Volume" in out
    assert manifest(volume)["metrics"]["train"]["resumed_from_step"] == 4
    assert not list((volume.state / "checkpoints").rglob("step-*")), "cleared after the publish"


def test_a_base_model_in_a_local_directory_is_refused_before_uploading(
    modal: LocalModal, tmp_path: Path
) -> None:
    from doppelkit.errors import UserError

    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    home = tmp_path / "home"
    run("ingest", [f"persona.user={PERSONA}", f"home={home}"])
    with pytest.raises(UserError, match="is a directory on this machine"):
        run("train", [*overrides(modal, home), f"model.name={model_dir}"])
    assert modal.uploads == []
