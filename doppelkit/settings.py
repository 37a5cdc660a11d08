"""Pydantic models of the core (non-plugin) config sections.

Plugin sections (``source``, ``formatter``, ``trainer``, ``backend``, ``frontend``) are validated
by their component's own ``Config``; these cover everything else in ``configs/doppelkit.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from doppelkit.models import PersonaSelector


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TinyModelConfig(_Section):
    """Shape of the locally built tiny model (``model=tiny``); nothing is downloaded."""

    vocab_size: int = Field(2048, ge=260, le=65536)
    hidden_size: int = Field(128, ge=16)
    intermediate_size: int = Field(344, ge=16)
    num_hidden_layers: int = Field(4, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(2, ge=1)
    max_position_embeddings: int = Field(1024, ge=64)
    pretrain_steps: int = Field(200, ge=0)  # brief pretraining on the workspace's own text
    pretrain_batch_size: int = Field(16, ge=1)
    pretrain_learning_rate: float = Field(3e-3, gt=0)
    seed: int = 0


class ModelConfig(_Section):
    """The base model: a hub id, a local directory, or ``tiny`` (built locally)."""

    name: str = "tiny"
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    load_in_4bit: bool = False  # QLoRA; needs bitsandbytes and a CUDA GPU
    trust_remote_code: bool = False
    tiny: TinyModelConfig | None = None


class DatasetConfig(_Section):
    """Where ``doppelkit ingest`` writes; ``null`` means under home (per team and persona)."""

    path: Path | None = None


class EngineConfig(_Section):
    """Generation settings shared by every frontend."""

    max_resident: int = Field(4, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(50, ge=0)
    max_new_tokens: int = Field(200, ge=1)
    repetition_penalty: float = Field(1.1, gt=0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None


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


class StoreConfig(_Section):
    """The persona store; ``url: null`` means a SQLite file under home/state."""

    url: str | None = None


class Settings(_Section):
    """The validated core of a run configuration."""

    home: Path
    persona: PersonaSelector = Field(default_factory=PersonaSelector)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    scrub: ScrubConfig = Field(default_factory=ScrubConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    verbose: bool = False
