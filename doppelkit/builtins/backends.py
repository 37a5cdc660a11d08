"""The built-in backends: ``local`` (implied when no ``+backend`` is given), ``cuda`` and
``process`` (each step in a fresh Python process)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from doppelkit.errors import DoppelkitError, UserError
from doppelkit.hookspecs import Register, hookimpl
from doppelkit.interfaces import RunContext
from doppelkit.termination import Terminated

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
        if self.config.device != "auto":
            _ = self.device  # a GPU asked for and missing: fail before the step starts
        # With "auto", steps that need a device are handed ``device`` by their caller; the rest
        # (ingest) never pay for importing torch to find out.
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


def require_device(device: str | None) -> None:
    """Fail before a step starts when it was sent to a CUDA device that is not there."""
    if device is not None and device.startswith("cuda") and not cuda_available():
        raise UserError(
            f"this step was sent to {device}, but PyTorch sees no CUDA GPU here "
            "(torch.cuda.is_available() is False). Set backend.device=cpu or leave it at auto."
        )


class StepFailedError(DoppelkitError):
    """A step died in its process (killed, crashed) or failed with an error that cannot be
    brought back as itself."""


class StepUserError(UserError):
    """A user mistake reported by a step in another process (its message, unchanged)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ProcessBackend:
    """Runs each step in a fresh Python process (``+backend=process``).

    The step and its plain-data arguments are pickled to a new interpreter (the same Python,
    environment, working directory and ``sys.path``), which rebuilds the components from the
    run configuration and runs it; the result or the error comes back the same way. Standard
    input, output and error are the caller's, so progress bars and ``doppelkit chat`` work.
    Memory a step used (a model on the GPU) is returned when its process ends, and a crash in a
    step does not take the caller down: it becomes a :class:`StepFailedError`.
    """

    name: ClassVar[str] = "process"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        device: Literal["auto", "cpu", "cuda"] = "auto"

    def __init__(self, config: Config, context: RunContext) -> None:
        self.config = config
        self.context = context

    @property
    def device(self) -> str | None:
        """``None`` for ``auto``: decided in the step's process (CUDA if it sees one)."""
        return None if self.config.device == "auto" else self.config.device

    def run(self, step: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        payload = pickle.dumps(list(sys.path)) + pickle.dumps((step, args, kwargs))
        read_payload, write_payload = os.pipe()
        read_result, write_result = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-m", "doppelkit.builtins.step_process", str(read_payload), str(write_result)],
            pass_fds=(read_payload, write_result),
        )
        os.close(read_payload)
        os.close(write_result)
        try:
            with os.fdopen(write_payload, "wb") as out:
                out.write(payload)
            with os.fdopen(read_result, "rb") as result:
                answer = result.read()
            status = process.wait()
        except BaseException as exc:
            _stop(process, forward=isinstance(exc, Terminated))
            raise
        name = getattr(step, "__qualname__", repr(step))
        if not answer:
            how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
            raise StepFailedError(f"the {name} step's process {how} before it finished")
        outcome, value = pickle.loads(answer)
        if outcome == "ok":
            result_value: T = value
            return result_value
        if outcome == "user_error":
            message, exit_code = value
            raise StepUserError(message, exit_code)
        if isinstance(value, BaseException):
            raise value
        raise StepFailedError(f"the {name} step failed in its process: {value}")


def _stop(process: subprocess.Popen[bytes], *, forward: bool, grace_s: float = 30.0) -> None:
    """Let an interrupted step's process end, else kill it. Ctrl-C reached it already (the
    terminal signals the whole process group); a SIGTERM sent to this process is ``forward``ed."""
    if forward and process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@hookimpl
def register_backends(register: Register) -> None:
    register(LocalBackend)
    register(CudaBackend)
    register(ProcessBackend)
