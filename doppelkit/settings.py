"""Pydantic models of the core (non-plugin) config sections.

Component sections (``source``, ``formatter``, ``trainer``, ``engine``, ``backend``,
``frontend``) are validated by their component's own ``Config``; these cover everything else
in ``configs/doppelkit.yaml``. A setting only one plugin reads belongs in that plugin's
``Config`` (the persona store URL in the bot's, the tiny model's shape in the trainer's), not
here: :data:`MOVED_KEYS` lists where earlier versions' keys went.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from doppelkit.models import PersonaSelector


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    """The base model: a hub id, a local directory, or ``tiny`` (built locally by the trainer)."""

    name: str = "tiny"
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False


class DatasetConfig(_Section):
    """What ``doppelkit ingest`` writes, and how it splits and groups threads."""

    path: Path | None = Field(
        None, description="the dataset JSONL; null = home/datasets/<team>/<user>/dataset.jsonl"
    )
    eval_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of threads held out for evaluation (by thread, deterministic)"
    )
    session_gap_minutes: float | None = Field(
        None,
        gt=0,
        description="merge lone top-level messages of a channel this close together into one "
        "conversation; null = off",
    )
    threadless_gap_minutes: float | None = Field(
        30.0,
        gt=0,
        description="when session_gap_minutes is null: merge lone messages this close together in "
        "channels where nobody ever replied in a thread (exports from before 2017); null = leave them alone",
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="processes ingest reads a large export with (one channel each, output in order, "
        "so the same bytes); null = one per available core when the export is large; 1 = this process",
    )


class ScrubConfig(_Section):
    """Which built-in scrubbers redact text before it reaches disk or a model.

    Passed to every ``scrub_message`` hook as ``config``. Secrets (tokens, API keys, private
    keys) are on by default; so are emails (precise pattern, personal data). Phone numbers are
    off by default: any phone pattern also matches some order numbers and IDs, and a false
    positive rewrites the persona's own words.
    """

    secrets: bool = True
    emails: bool = True
    phones: bool = False


class Settings(_Section):
    """The validated core of a run configuration."""

    home: Path
    persona: PersonaSelector = Field(default_factory=PersonaSelector)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    scrub: ScrubConfig = Field(default_factory=ScrubConfig)
    verbose: bool = False


# Keys that moved to the component that reads them. A run that still sets one fails with one
# line naming the new key; docs/migration.md lists them.
MOVED_KEYS: dict[str, str] = {
    "store": "frontend.store_url",
    "store.url": "frontend.store_url",
    "model.load_in_4bit": "trainer.load_in_4bit",
    "formatter.eval_fraction": "dataset.eval_fraction",
    "formatter.session_gap_minutes": "dataset.session_gap_minutes",
}
# Whole sections that moved: every key under them moved with them.
MOVED_SECTIONS: dict[str, str] = {"model.tiny": "trainer.tiny"}


def moved_key(key: str) -> str | None:
    """The new name of ``key`` if it moved (``model.tiny.seed`` → ``trainer.tiny.seed``)."""
    if key in MOVED_KEYS:
        return MOVED_KEYS[key]
    for old, new in MOVED_SECTIONS.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old) :]
    return None
