"""The built-in backends: ``local`` (implied when no ``+backend`` is given) and ``cuda``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from doppelkit.errors import UserError
from doppelkit.hookspecs import Register, hookimpl
from doppelkit.interfaces import RunContext

T = TypeVar("T")


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (torch imported only here)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class LocalBackend:
    """Runs every step in this process, on CUDA when available, else on the CPU."""

    name: ClassVar[str] = "local"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        device: Literal["auto", "cpu", "cuda"] = "auto"

    def __init__(self, config: Config, context: RunContext) -> None:
        self.config = config
        self.context = context
        self._device: str | None = None

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = self._resolve_device()
        return self._device

    def _resolve_device(self) -> str:
        if self.config.device == "auto":
            return "cuda" if cuda_available() else "cpu"
        if self.config.device == "cuda" and not cuda_available():
            raise UserError(
                "a CUDA GPU was asked for (+backend=cuda or backend.device=cuda), but PyTorch sees "
                "none (torch.cuda.is_available() is False). Leave out +backend to run on the CPU."
            )
        return self.config.device

    def run(self, step: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        _ = self.device  # fail before the step starts, not in the middle of it
        return step(*args, **kwargs)


class CudaBackend:
    """In-process, but insists on a CUDA GPU (``+backend=cuda``)."""

    name: ClassVar[str] = "cuda"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config, context: RunContext) -> None:
        self.config = config
        self._local = LocalBackend(LocalBackend.Config(device="cuda"), context)

    @property
    def device(self) -> str:
        return self._local.device

    def run(self, step: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return self._local.run(step, *args, **kwargs)


@hookimpl
def register_backends(register: Register) -> None:
    register(LocalBackend)
    register(CudaBackend)
