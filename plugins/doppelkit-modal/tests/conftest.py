"""Fixtures of the modal backend's tests (helpers live in ``modal_testkit``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from doppelkit_modal.testing import LocalModal, local_modal


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The tiny model trains several times faster on one thread (as OMP_NUM_THREADS=1 does for
    the CLI tests); set for each test of this folder only, then put back."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _restore_quiet_env() -> Iterator[None]:
    """The bodies quiet libraries as containers do (``doppelkit.quiet``), here in the test
    process: their environment variables go back after each test."""
    from doppelkit.quiet import QUIET_ENV, VERBOSE_ENV

    names = (*QUIET_ENV, VERBOSE_ENV)
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def modal(tmp_path: Path) -> Iterator[LocalModal]:
    """Modal played in this process: ``tmp_path/volume`` is the Volume (and backend.mount_path)."""
    with local_modal(tmp_path / "volume") as harness:
        yield harness
