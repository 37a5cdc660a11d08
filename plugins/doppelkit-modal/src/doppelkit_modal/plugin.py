"""Entry point of the doppelkit-modal plugin: registers the ``modal`` backend.

Imported by ``doppelkit --help``: keep it light (modal is imported only when a step needs it).

Deleting on Modal: ``/doppel forget`` and an uninstall delete files on the Volume from the bot's
web container, through every plugin's ``forget_*`` hooks. The wrappers here commit the Volume
once they all ran, so the deletion reaches the engine containers (they reload) at once rather
than at the container's next background commit.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from doppelkit import hookimpl
from doppelkit.home import Home
from doppelkit.hookspecs import Register


@hookimpl
def register_backends(register: Register) -> None:
    from doppelkit_modal.backend import ModalBackend

    register(ModalBackend)


@hookimpl(wrapper=True)
def forget_person(team: str, user: str, home: Home) -> Generator[None, Any, Any]:
    removed = yield
    commit_if_on_volume(home)
    return removed


@hookimpl(wrapper=True)
def forget_team(team: str, home: Home) -> Generator[None, Any, Any]:
    removed = yield
    commit_if_on_volume(home)
    return removed


def commit_if_on_volume(home: Home) -> bool:
    """In a deployed container whose ``home`` is the Volume, commit it; True if it did."""
    from doppelkit_modal.remote_env import deployed_backend

    config = deployed_backend()
    if config is None or home.root != Home.at(config.mount_path).root:
        return False
    from doppelkit_modal.sides import ModalContainerSide

    ModalContainerSide(config).commit()
    return True
