"""``+backend=process``: each step in a fresh Python process; results and errors come back."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from doppelkit.builtins.backends import ProcessBackend, StepFailedError, StepUserError
from doppelkit.errors import InputDataError
from doppelkit.termination import Terminated, sigterm_raises
from doppelkit.testing.contracts import BackendContract


def fails_as_the_user(message: str) -> None:
    raise InputDataError(message)


def dies() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickle cannot rebuild it from its args
        super().__init__(f"{a}/{b}")


def raises_unpicklable() -> None:
    raise Unpicklable(1, 2)


def cleans_up_when_stopped(folder: str) -> None:
    (Path(folder) / "started").touch()
    try:
        time.sleep(60)
    finally:
        (Path(folder) / "cleaned up").touch()


def where_am_i() -> int:
    return os.getpid()


@pytest.fixture
def backend(run_context):  # type: ignore[no-untyped-def]
    return ProcessBackend(ProcessBackend.Config(), run_context)


class TestProcessBackend(BackendContract):
    @pytest.fixture
    def backend(self, run_context):  # type: ignore[no-untyped-def]
        return ProcessBackend(ProcessBackend.Config(), run_context)


def test_each_step_runs_in_a_fresh_process(backend: ProcessBackend) -> None:
    first, second = backend.run(where_am_i), backend.run(where_am_i)
    assert os.getpid() not in (first, second) and first != second


def test_a_user_mistake_in_the_step_is_a_user_error_here(backend: ProcessBackend) -> None:
    with pytest.raises(StepUserError, match="export.zip is not readable") as raised:
        backend.run(fails_as_the_user, "export.zip is not readable")
    assert raised.value.exit_code == 2


def test_a_step_killed_midway_does_not_take_the_caller_down(backend: ProcessBackend) -> None:
    with pytest.raises(StepFailedError, match="killed by signal 9"):
        backend.run(dies)
    assert backend.run(pow, 3, 2) == 9, "the caller goes on"


def test_an_error_that_cannot_travel_is_described(backend: ProcessBackend) -> None:
    with pytest.raises(StepFailedError, match="Unpicklable: 1/2"):
        backend.run(raises_unpicklable)


def test_auto_device_is_decided_in_the_step(run_context) -> None:  # type: ignore[no-untyped-def]
    assert ProcessBackend(ProcessBackend.Config(), run_context).device is None
    assert ProcessBackend(ProcessBackend.Config(device="cpu"), run_context).device == "cpu"


def test_sigterm_reaches_the_step_which_cleans_up(backend: ProcessBackend, tmp_path: Path) -> None:
    """``kill <doppelkit>`` (docker stop, systemd) stops the step's process too, through its
    finally blocks — it used to keep running, orphaned, while the caller died."""

    def terminate_once_started() -> None:
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_once_started, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(Terminated), sigterm_raises():
        backend.run(cleans_up_when_stopped, str(tmp_path))
    assert (tmp_path / "cleaned up").exists()
    assert time.monotonic() - started < 30
