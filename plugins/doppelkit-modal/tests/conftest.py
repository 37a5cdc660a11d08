"""Fixtures of the modal backend's tests (helpers live in ``modal_testkit``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from doppelkit_modal.testing import LocalModal, local_modal


@pytest.fixture
def modal(tmp_path: Path) -> Iterator[LocalModal]:
    """Modal played in this process: ``tmp_path/volume`` is the Volume (and backend.mount_path)."""
    with local_modal(tmp_path / "volume") as harness:
        yield harness
