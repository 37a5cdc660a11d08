"""Resumable training state, saved atomically under ``home/state/checkpoints``.

A checkpoint holds the trainable (LoRA) weights, the optimizer moments, the RNG states and a
small JSON of counters — all tensors in safetensors, nothing pickled. Each save goes to a
staging directory that is fsynced and renamed to ``step-NNNNNNN`` (:func:`doppelkit.home.atomic_dir`,
whose hidden leftovers all start with ``.step-``); then the ``LATEST`` pointer is replaced
atomically and older steps and leftovers are removed. A crash mid-save leaves the previous
checkpoint in force.

Checkpoints are keyed by everything that shapes the run (dataset, base model, formatter,
training knobs), so a run resumes only the very run it continues.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from doppelkit.faults import crash_point
from doppelkit.home import Home, atomic_dir, atomic_write
from doppelkit.models import validate_safe_id

LATEST = "LATEST"
STEP_DIR = re.compile(r"^step-[0-9]{7}$")


@dataclass
class TrainState:
    """Counters of a run in progress (everything a resumed run needs besides tensors)."""

    step: int = 0
    tokens: int = 0  # target tokens trained on so far
    seconds: float = 0.0  # training time so far (throughput across resumes)
    best_eval_loss: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    base_eval_loss: float | None = None  # computed once, before the first step
    last_loss: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # eval points: step, loss
    resumed_from: int | None = None
    stopped_early: bool = False


def trainable_state(model: Any) -> dict[str, Any]:
    """The trainable parameters (the LoRA weights) by name, detached copies on the CPU."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: Any, tensors: dict[str, Any]) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_tensors() -> dict[str, Any]:
    import torch

    tensors = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = value
    return tensors


def _restore_rng(tensors: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


@dataclass
class Resumed:
    state: TrainState
    best_weights: dict[str, Any] | None


def checkpoints_root(home: Home, *ids: str) -> Path:
    """``home/state/checkpoints[/<team>[/<user>]]``: where this trainer keeps unfinished runs."""
    return home.state.joinpath("checkpoints", *(validate_safe_id(i, "id") for i in ids))


class Checkpoints:
    """The checkpoints of one run (``key``) of one persona."""

    def __init__(self, home: Home, team: str, user: str, key: str) -> None:
        self.root = checkpoints_root(home, team, user, key)

    def save(self, model: Any, optimizer: Any, state: TrainState, best: dict[str, Any] | None) -> Path:
        from safetensors.torch import save_file

        name = f"step-{state.step:07d}"
        target = self.root / name
        # replace: a stale copy of the same step (e.g. from a run that died before moving LATEST)
        with atomic_dir(target, replace=True) as staging:
            optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
            save_file(trainable_state(model), str(staging / "adapter.safetensors"))
            save_file({**optim_tensors, **_rng_tensors()}, str(staging / "optimizer.safetensors"))
            if best is not None:
                save_file(best, str(staging / "best.safetensors"))
            payload = {"state": asdict(state), "optimizer": optim_meta}
            (staging / "state.json").write_text(json.dumps(payload), encoding="utf-8")
        crash_point("checkpoint:renamed")
        with atomic_write(self.root / LATEST) as fh:
            fh.write(name + "\n")
        for old in self.root.iterdir():
            if old.name != name and (STEP_DIR.match(old.name) or old.name.startswith(".step-")):
                shutil.rmtree(old, ignore_errors=True)
        return target

    def load(self, model: Any, optimizer: Any) -> Resumed | None:
        """Restore the latest checkpoint into ``model``/``optimizer``; ``None`` if there is none."""
        from safetensors.torch import load_file

        try:
            name = (self.root / LATEST).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        directory = self.root / name
        if not STEP_DIR.match(name) or not directory.is_dir():
            return None
        payload = json.loads((directory / "state.json").read_text(encoding="utf-8"))
        load_trainable_state(model, load_file(str(directory / "adapter.safetensors")))
        extra = load_file(str(directory / "optimizer.safetensors"))
        optimizer.load_state_dict(_unflatten_optimizer(extra, payload["optimizer"]))
        _restore_rng(extra)
        best_path = directory / "best.safetensors"
        best = load_file(str(best_path)) if best_path.is_file() else None
        return Resumed(TrainState(**payload["state"]), best)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
