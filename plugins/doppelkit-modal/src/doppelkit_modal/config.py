"""``backend.*`` for ``+backend=modal``: where and how each step runs on Modal.

A leaf module (pydantic only): ``doppelkit --cfg job`` and ``--help`` import it, so it must not
import modal. Modal itself validates little on the client (an unknown GPU type, for instance,
fails only at deploy), so everything that can be checked here is.
"""

from __future__ import annotations

import re
import sys
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# GPU types Modal offers (modal.com/docs/guide/gpu); "TYPE" or "TYPE:N" (N GPUs per container).
GPU_TYPES = (
    "T4",
    "L4",
    "A10",
    "A10G",
    "L40S",
    "A100",
    "A100-40GB",
    "A100-80GB",
    "RTX-PRO-6000",
    "H100",
    "H100!",
    "H200",
    "B200",
    "B200+",
)
_GPU = re.compile(r"^(?P<type>[A-Za-z0-9!+-]+?)(?::(?P<count>[1-8]))?$")
# Modal object names: letters, digits, '-', '_', '.', at most 64 characters.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_TIMEOUT_S = 24 * 3600  # Modal's longest function timeout


def check_gpu(value: str | None) -> str | None:
    """``None`` (a CPU container) or a GPU Modal knows, upper-cased as Modal writes it."""
    if value is None:
        return None
    match = _GPU.match(value.strip())
    if match is None or match["type"].upper() not in GPU_TYPES:
        raise ValueError(f"unknown GPU {value!r}; use one of {', '.join(GPU_TYPES)}, optionally ':N' (N ≤ 8)")
    count = match["count"]
    return match["type"].upper() + (f":{count}" if count else "")


class RetryConfig(BaseModel):
    """``backend.retries.*``: how a failed or preempted training run is retried (it resumes from
    the last checkpoint on the Volume). The bounds are Modal's (``modal.Retries``)."""

    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(2, ge=0, le=10)
    backoff_coefficient: float = Field(2.0, ge=1.0, le=10.0)
    initial_delay: float = Field(10.0, ge=0.0, le=60.0, description="seconds before the first retry")
    max_delay: float = Field(60.0, ge=1.0, le=60.0, description="seconds; Modal allows at most 60")


class ModalConfig(BaseModel):
    """``backend.*`` for ``+backend=modal``."""

    model_config = ConfigDict(extra="forbid")

    app_name: str = Field("doppelkit", pattern=NAME_PATTERN, description="the Modal app (one per deployment)")
    environment: str | None = Field(None, description="Modal environment; null = the profile's default")
    volume: str = Field("doppelkit-home", pattern=NAME_PATTERN, description="the Volume that holds home")
    mount_path: str = Field("/doppelkit-home", description="where the Volume (the remote home) is mounted")
    download: bool = Field(False, description="also copy each adapter trained on Modal into the local home")

    train_gpu: str | None = Field("H100", description="GPU of the train function; null = a CPU container")
    train_timeout: int = Field(4 * 3600, ge=60, le=MAX_TIMEOUT_S, description="seconds per training attempt")
    train_cpu: float | None = Field(None, gt=0, description="CPU cores of the train function; null = Modal's")
    train_memory: int | None = Field(None, ge=128, description="MiB of the train function; null = Modal's")
    retries: RetryConfig = Field(default_factory=RetryConfig)

    serve_gpu: str | None = Field("L40S", description="GPU of the engine class; null = a CPU container")
    serve_timeout: int = Field(600, ge=10, le=MAX_TIMEOUT_S, description="seconds per reply")
    serve_memory: int | None = Field(None, ge=128, description="MiB of an engine container; null = Modal's")
    engine_concurrency: int = Field(
        8, ge=1, le=1000, description="replies one engine container takes at once"
    )
    web_concurrency: int = Field(
        32, ge=1, le=1000, description="Slack requests one web container takes at once"
    )
    web_timeout: int = Field(600, ge=10, le=MAX_TIMEOUT_S, description="seconds per Slack request")
    job_timeout: int = Field(
        8 * 3600,
        ge=60,
        le=MAX_TIMEOUT_S,
        description="seconds for `/doppel train` (read the workspace + train)",
    )
    min_containers: int = Field(0, ge=0, le=100, description="containers kept warm; 0 = scale to zero")
    max_containers: int | None = Field(
        None, ge=1, le=1000, description="engine containers at most; null = no cap"
    )
    scaledown_window: int = Field(
        300, ge=2, le=3600, description="seconds an idle container waits before stopping"
    )
    memory_snapshot: bool = Field(
        True, description="snapshot the web container after start-up (faster cold starts)"
    )
    reload_interval: float = Field(
        15.0, ge=0.0, le=3600.0, description="seconds between Volume reloads while serving (new versions)"
    )
    region: str | list[str] | None = Field(None, description="Modal region(s); null = anywhere")

    secrets: list[str] = Field(
        default_factory=list,
        description="Modal Secrets for training and the engine (e.g. one holding HF_TOKEN)",
    )
    web_secrets: list[str] = Field(
        default_factory=lambda: ["doppelkit-slack"],
        description="Modal Secrets for the bot: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, DOPPELKIT_STORE_URL",
    )
    pip: list[str] = Field(
        default_factory=list, description="extra requirements for the image, e.g. hf_transfer"
    )
    python_version: str = Field(
        f"{sys.version_info.major}.{sys.version_info.minor}",
        pattern=r"^3\.\d{1,2}$",
        description="Python of the image; the local one by default",
    )

    @field_validator("train_gpu", "serve_gpu")
    @classmethod
    def _gpu(cls, value: str | None) -> str | None:
        return check_gpu(value)

    @field_validator("mount_path")
    @classmethod
    def _mount_path(cls, value: str) -> str:
        path = PurePosixPath(value)
        if (
            not path.is_absolute()
            or ".." in path.parts
            or str(path) in ("/", "/root", "/tmp", "/proc", "/dev")
        ):
            raise ValueError("must be an absolute path other than /, /root and /tmp, without '..'")
        return str(path)

    @field_validator("secrets", "web_secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not re.match(NAME_PATTERN, name)]
        if bad:
            raise ValueError(f"not Modal Secret names: {', '.join(map(repr, bad))}")
        return list(dict.fromkeys(value))

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            return None
        return value

    @model_validator(mode="after")
    def _containers(self) -> ModalConfig:
        if self.max_containers is not None and self.max_containers < self.min_containers:
            raise ValueError(
                f"max_containers ({self.max_containers}) is below min_containers ({self.min_containers})"
            )
        return self

    @property
    def train_device(self) -> str:
        return "cuda" if self.train_gpu else "cpu"

    @property
    def serve_device(self) -> str:
        return "cuda" if self.serve_gpu else "cpu"
