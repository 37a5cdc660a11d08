"""Run one training job in a fresh process, from a JSON spec (used by the crash tests).

    python train_in_subprocess.py SPEC.json

The spec names the home, the persona, the dataset files, the model and trainer configs. The
caller sets ``DOPPELKIT_CRASH_AT`` to make the process SIGKILL itself at a chosen point.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from doppelkit.builtins.formatters import ChatFormatter
from doppelkit.interfaces import TrainJob
from doppelkit.models import DatasetReport, Persona
from doppelkit.settings import ModelConfig
from doppelkit.testing.helpers import make_context
from doppelkit_lora.train.trainer import LoraConfig, LoraTrainer


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    context = make_context(Path(spec["home"]))
    context.device = "cpu"
    job = TrainJob(
        persona=Persona.model_validate(spec["persona"]),
        dataset=Path(spec["dataset"]),
        eval_dataset=Path(spec["eval_dataset"]),
        formatter=ChatFormatter(ChatFormatter.Config(), context),
        model=ModelConfig.model_validate(spec["model"]),
        report=DatasetReport.model_validate(spec["report"]),
    )
    LoraTrainer(LoraConfig.model_validate(spec["trainer"]), context).train(job)


if __name__ == "__main__":
    main(sys.argv[1])
