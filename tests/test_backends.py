from __future__ import annotations

import pytest

from doppelkit.builtins import backends
from doppelkit.builtins.backends import CudaBackend, LocalBackend
from doppelkit.errors import UserError
from doppelkit.testing.contracts import BackendContract


class TestLocalBackend(BackendContract):
    @pytest.fixture
    def backend(self, run_context):  # type: ignore[no-untyped-def]
        return LocalBackend(LocalBackend.Config(device="cpu"), run_context)


def test_auto_device_is_cpu_without_cuda(run_context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    assert LocalBackend(LocalBackend.Config(), run_context).device == "cpu"


def test_steps_that_need_no_device_do_not_look_for_one(run_context, monkeypatch: pytest.MonkeyPatch) -> None:
    """``doppelkit ingest`` on the default backend never imports torch to find a GPU it does not use."""

    def no_torch() -> bool:
        raise AssertionError("looked for CUDA")

    monkeypatch.setattr(backends, "cuda_available", no_torch)
    assert LocalBackend(LocalBackend.Config(), run_context).run(pow, 2, 3) == 8


def test_cuda_backend_says_clearly_when_there_is_no_gpu(run_context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    backend = CudaBackend(CudaBackend.Config(), run_context)
    with pytest.raises(UserError, match=r"CUDA GPU was asked for.*Leave out \+backend"):
        backend.run(pow, 2, 2)
