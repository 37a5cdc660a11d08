"""Entry point of the doppelkit-lora plugin: registers its components and forgets its files.

Importing this module must stay cheap (``doppelkit --help`` imports it): torch, transformers
and peft are imported only inside the functions that use them.

Files this plugin keeps under home: training checkpoints (``state/checkpoints/<team>/<user>``,
removed after a successful publish) and the tiny base models (``cache/tiny/<key>``, built from
a team's workspace corpus). Datasets and adapters are the core's.
"""

from __future__ import annotations

from doppelkit import hookimpl
from doppelkit.home import Home
from doppelkit.hookspecs import Register


@hookimpl
def register_trainers(register: Register) -> None:
    from doppelkit_lora.train.trainer import LoraTrainer

    register(LoraTrainer)


@hookimpl
def register_engines(register: Register) -> None:
    from doppelkit_lora.serve.engine import PeftEngine

    register(PeftEngine)


@hookimpl
def forget_person(team: str, user: str, home: Home) -> list[str]:
    from doppelkit_lora.train.checkpoints import checkpoints_root

    return ["training checkpoints"] if home.remove(checkpoints_root(home, team, user)) else []


@hookimpl
def forget_team(team: str, home: Home) -> list[str]:
    """The team's checkpoints and the tiny bases pretrained on its corpus (everyone's words)."""
    from doppelkit_lora.model.tiny import team_bases
    from doppelkit_lora.train.checkpoints import checkpoints_root

    removed = ["training checkpoints"] if home.remove(checkpoints_root(home, team)) else []
    if [base for base in team_bases(home, team) if home.remove(base)]:
        removed.append("tiny base")
    return removed


@hookimpl
def locate_base(base_model: str, model_revision: str | None, home: Home) -> tuple[str, str | None] | None:
    """The tiny bases are this plugin's folders: say where one is (any engine may serve it)."""
    from doppelkit_lora.model.tiny import TINY_NAME, tiny_base_location

    return (tiny_base_location(home, model_revision), None) if base_model == TINY_NAME else None
