"""Fixtures of the lora plugin's tests (helpers live in ``lora_testkit``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lora_testkit import PERSONA, fast_config, make_examples, write_jsonl

from doppelkit.builtins.formatters import ChatFormatter
from doppelkit.interfaces import RunContext, TrainJob
from doppelkit.models import DatasetReport
from doppelkit.settings import ModelConfig
from doppelkit_lora.train.trainer import LoraTrainer


@pytest.fixture
def model_config() -> ModelConfig:
    return ModelConfig(name="tiny", dtype="float32")


@pytest.fixture
def formatter(run_context: RunContext) -> ChatFormatter:
    return ChatFormatter(ChatFormatter.Config(), run_context)


@pytest.fixture
def dataset_dir(doppelkit_home: Any) -> Path:
    return doppelkit_home.datasets(PERSONA.team, PERSONA.id)


@pytest.fixture
def train_job(dataset_dir: Path, formatter: ChatFormatter, model_config: ModelConfig) -> TrainJob:
    train = write_jsonl(dataset_dir / "dataset.jsonl", make_examples(24, seed=1))
    held_out = write_jsonl(dataset_dir / "dataset.eval.jsonl", make_examples(6, seed=2))
    return TrainJob(
        persona=PERSONA,
        dataset=train,
        eval_dataset=held_out,
        formatter=formatter,
        model=model_config,
        report=DatasetReport(source="slack_export", team=PERSONA.team, persona_id=PERSONA.id),
    )


@pytest.fixture
def run_context_cpu(run_context: RunContext) -> RunContext:
    run_context.device = "cpu"
    return run_context


@pytest.fixture
def trainer(run_context_cpu: RunContext) -> LoraTrainer:
    return LoraTrainer(fast_config(), run_context_cpu)
