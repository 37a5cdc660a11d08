from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lora_testkit import fast_config

from doppelkit import artifacts
from doppelkit.interfaces import TrainJob
from doppelkit.testing.contracts import TrainerContract
from doppelkit_lora.model.tiny import tiny_dir
from doppelkit_lora.train import trainer as trainer_module
from doppelkit_lora.train.trainer import LoraTrainer


class TestLoraTrainer(TrainerContract):
    """The shared trainer contract; ``train_job`` comes from conftest."""

    @pytest.fixture
    def trainer(self, run_context_cpu) -> LoraTrainer:  # type: ignore[no-untyped-def, override]
        return LoraTrainer(fast_config(), run_context_cpu)


def test_persona_report_is_in_the_manifest(trainer: LoraTrainer, train_job: TrainJob) -> None:
    result = trainer.train(train_job)
    manifest = json.loads((result.adapter_dir / "manifest.json").read_text())
    report = manifest["metrics"]
    assert report["eval"]["split"] == "held-out"
    assert report["eval"]["base_loss"] > report["eval"]["adapter_loss"] > 0
    assert set(report["style"]) == {"real", "base", "adapter"}
    assert report["memorisation"]["threshold_chars"] == 50
    assert 0 <= report["memorisation"]["adapter_rate"] <= 1
    assert manifest["base_model"] == "tiny" and manifest["model_revision"]
    assert sorted(p.name for p in result.adapter_dir.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "manifest.json",
    ]
    current = artifacts.current_version(trainer.context.home, train_job.persona.team, train_job.persona.id)
    assert current is not None and current.path == result.adapter_dir
    assert "Persona report" in trainer.context.console.file.getvalue()  # type: ignore[attr-defined]


def test_adapter_loads_with_plain_peft_and_nothing_from_doppelkit(
    trainer: LoraTrainer, train_job: TrainJob
) -> None:
    result = trainer.train(train_job)
    manifest = json.loads((result.adapter_dir / "manifest.json").read_text())
    base = tiny_dir(trainer.context.home, manifest["model_revision"])
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from peft import PeftModel
        base = AutoModelForCausalLM.from_pretrained({str(base)!r})
        tokenizer = AutoTokenizer.from_pretrained({str(base)!r})
        ids = tokenizer("Ann: did the deploy go out?", return_tensors="pt").input_ids
        before = base(ids).logits
        model = PeftModel.from_pretrained(base, {str(result.adapter_dir)!r})
        after = model(ids).logits
        assert not torch.allclose(before, after), "the adapter changes the model"
        assert not any(m.startswith("doppelkit") for m in sys.modules), "doppelkit was imported"
        print("OK")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("OK")


class Interrupted(Exception):
    pass


def _crash_at(point: str):  # type: ignore[no-untyped-def]
    def crash(name: str) -> None:
        if name == point:
            raise Interrupted(name)

    return crash


def test_resume_continues_the_interrupted_run_exactly(
    run_context_cpu, train_job: TrainJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    config = fast_config(delete_dataset_after=True)
    monkeypatch.setattr(trainer_module, "crash_point", _crash_at("train:step:5"))
    with pytest.raises(Interrupted):
        LoraTrainer(config, run_context_cpu).train(train_job)
    assert train_job.dataset.is_file(), "a failed run never deletes the dataset"
    assert artifacts.current_version(run_context_cpu.home, "T0TEST", "U0MAYA") is None

    monkeypatch.setattr(trainer_module, "crash_point", lambda name: None)
    resumed = LoraTrainer(config.model_copy(update={"delete_dataset_after": False}), run_context_cpu).train(
        train_job
    )
    assert resumed.metrics["train"]["resumed_from_step"] == 4
    assert not list((run_context_cpu.home.state / "checkpoints").rglob("step-*")), "cleared after publish"

    fresh = LoraTrainer(
        config.model_copy(update={"resume": False, "delete_dataset_after": False}), run_context_cpu
    )
    straight = fresh.train(train_job)
    a = load_file(str(resumed.adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(straight.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-5, key


@pytest.mark.parametrize(
    ("source", "setting", "deleted"),
    [
        ("slack", None, True),
        ("slack_export", None, False),
        ("slack_export", True, True),
        ("slack", False, False),
    ],
)
def test_delete_dataset_after_success(
    run_context_cpu, train_job: TrainJob, source: str, setting: bool | None, deleted: bool
) -> None:
    assert train_job.report is not None
    job = dataclasses.replace(train_job, report=train_job.report.model_copy(update={"source": source}))
    trainer = LoraTrainer(
        fast_config(delete_dataset_after=setting, max_steps=1, report_samples=0, eval_every=0),
        run_context_cpu,
    )
    trainer.train(job)
    assert job.eval_dataset is not None
    assert job.dataset.exists() is not deleted
    assert job.eval_dataset.exists() is not deleted


def test_kill_during_publish_keeps_the_previous_version(
    trainer: LoraTrainer, train_job: TrainJob, tmp_path: Path
) -> None:
    """SIGKILL a real training run between writing its new version and renaming it in."""
    first = trainer.train(train_job)
    home = trainer.context.home
    assert train_job.report is not None and train_job.eval_dataset is not None
    spec = {
        "home": str(home.root),
        "persona": train_job.persona.model_dump(mode="json"),
        "dataset": str(train_job.dataset),
        "eval_dataset": str(train_job.eval_dataset),
        "model": train_job.model.model_dump(mode="json"),
        "report": train_job.report.model_copy(update={"source": "slack"}).model_dump(mode="json"),
        "trainer": fast_config(delete_dataset_after=True).model_dump(mode="json"),
    }
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    runner = Path(__file__).with_name("train_in_subprocess.py")
    env = {**os.environ, "DOPPELKIT_CRASH_AT": "publish:staged", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(runner), str(spec_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == -9, done.stderr[-3000:]

    current = artifacts.current_version(home, "T0TEST", "U0MAYA")
    assert current is not None and current.version == first.version == "v1"
    assert [v.version for v in artifacts.list_versions(home, "T0TEST", "U0MAYA")] == ["v1"]
    assert not (current.path.parent / "v2").exists(), "no half version visible"
    assert train_job.dataset.is_file(), "killed before success: the dataset is kept"
    _assert_loads(current.path, current.manifest.model_revision, home)

    again = trainer.train(train_job)
    assert again.version == "v2"
    assert not list(current.path.parent.glob(".staging-*")), "the crashed staging dir was cleaned up"


def _assert_loads(adapter: Path, revision: str | None, home) -> None:  # type: ignore[no-untyped-def]
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert revision is not None
    base = AutoModelForCausalLM.from_pretrained(tiny_dir(home, revision))
    PeftModel.from_pretrained(base, adapter)


def test_tiny_base_is_cached_and_reused(trainer: LoraTrainer, train_job: TrainJob) -> None:
    from doppelkit_lora.model.tiny import TinyCorpus, cache_key, ensure_tiny_base
    from doppelkit_lora.train.base_corpus import tiny_corpus
    from doppelkit_lora.train.data import read_examples

    corpus = tiny_corpus(train_job, read_examples(train_job.dataset))  # no corpus: dataset turns
    assert corpus.origin == "dataset turns"
    home, config = trainer.context.home, trainer.config.tiny
    first = ensure_tiny_base(home, config, corpus)
    unread = TinyCorpus(corpus.team, corpus.sha256, corpus.origin, read=lambda: pytest.fail("read"))
    second = ensure_tiny_base(home, config, unread)
    assert first.built and not second.built and first.path == second.path, "reused without reading"
    others = {
        cache_key(dataclasses.replace(corpus, sha256="1" * 64), config),
        cache_key(dataclasses.replace(corpus, team="T0OTHER"), config),
        cache_key(corpus, config.model_copy(update={"pretrain_steps": 16})),
    }
    assert first.key not in others and len(others) == 3


def test_early_stopping_publishes_the_best_evaluation(
    run_context_cpu, train_job: TrainJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held-out loss that only gets worse after the first evaluation stops the run there."""
    losses = iter([5.0, 1.0, 1.5, 2.0, 2.5, 3.0])  # base model first, then each evaluation
    monkeypatch.setattr(trainer_module, "eval_loss", lambda *args, **kwargs: next(losses))
    config = fast_config(max_steps=50, eval_every=1, early_stopping_patience=2, report_samples=0)
    result = LoraTrainer(config, run_context_cpu).train(train_job)
    train, evaluation = result.metrics["train"], result.metrics["eval"]
    assert train["stopped_early"] and train["steps"] == 3 and train["best_step"] == 1
    assert evaluation["adapter_loss"] == 1.0 and evaluation["base_loss"] == 5.0
