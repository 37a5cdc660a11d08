"""The Modal app, built from the run's configuration: which functions, on which hardware.

=========  ==========================================================================  ================
part       does                                                                        runs on
=========  ==========================================================================  ================
``train``  the train step; retried (resuming from the Volume's checkpoints)            ``train_gpu``
``job``    a step started detached: the bot's ``/doppel train`` (read, train, report)   CPU
``Engine`` the configured engine; base model loaded once per container, every persona   ``serve_gpu``
``Web``    the configured frontend as an ASGI endpoint (Slack's Request URL)           CPU, snapshotted
=========  ==========================================================================  ================

Every part mounts the Volume that holds ``home`` at ``backend.mount_path``; serving parts scale
to zero (``backend.min_containers=0``). The bodies live in :mod:`doppelkit_modal.remote`; here
they are only decorated, so the same module-level code serves every configuration. The app is
built with ``include_source=False``: the image (:mod:`doppelkit_modal.image`) is the one
description of the code that runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from doppelkit_modal.config import ModalConfig
from doppelkit_modal.image import ImageRecipe, build_image

PARTS = ("train", "job", "engine", "web")
# Rich draws its progress bars on a terminal only; with these it draws them into the logs
# that stream back to the caller (`doppelkit +backend=modal` shows training progress).
TRAIN_ENV: dict[str, str | None] = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "120"}
SERVE_ENV: dict[str, str | None] = {
    "HF_HUB_OFFLINE": "1"
}  # serving reads the base model from the Volume, never the Hub


@dataclass
class BuiltApp:
    app: Any  # modal.App
    image: Any  # modal.Image
    recipe: ImageRecipe
    run_data: dict[str, Any]  # the remote run (home on the Volume)
    train: Any = None  # modal.Function
    job: Any = None  # modal.Function
    engine: Any = None  # modal.Cls
    web: Any = None  # modal.Cls
    env: dict[str, dict[str, str | None]] = field(default_factory=dict)  # part → env given to it


def image_env(config: ModalConfig) -> dict[str, str]:
    return {
        "HF_HOME": f"{config.mount_path}/cache/huggingface",  # base models cached on the Volume
        "PYTHONUNBUFFERED": "1",  # logs stream as they are written
    }


def build_app(
    config: ModalConfig,
    run_data: dict[str, Any],
    recipe: ImageRecipe,
    parts: tuple[str, ...] = PARTS,
) -> BuiltApp:
    """Decorate the bodies for this configuration. Lazy: no network, no credentials.

    ``parts``: which of ``train``, ``job``, ``engine``, ``web`` the app holds — an ephemeral
    training app needs only ``train`` (and so never asks for the bot's Secrets).
    """
    import modal

    from doppelkit_modal import remote

    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown app parts: {sorted(unknown)}")
    image = build_image(recipe, config.pip)
    volume = modal.Volume.from_name(
        config.volume, environment_name=config.environment, create_if_missing=True
    )
    volumes = {config.mount_path: volume}
    secrets = [modal.Secret.from_name(name, environment_name=config.environment) for name in config.secrets]
    web_secrets = [
        modal.Secret.from_name(name, environment_name=config.environment) for name in config.web_secrets
    ]
    run_json: dict[str, str | None] = {remote.RUN_ENV: json.dumps(run_data, sort_keys=True)}
    app = modal.App(config.app_name, include_source=False)
    built = BuiltApp(app=app, image=image, recipe=recipe, run_data=run_data)
    common: dict[str, Any] = {"image": image, "volumes": volumes, "region": config.region}

    if "train" in parts:
        retries = config.retries
        built.env["train"] = dict(TRAIN_ENV)
        built.train = app.function(
            **common,
            name="train",
            gpu=config.train_gpu,
            cpu=config.train_cpu,
            memory=config.train_memory,
            timeout=config.train_timeout,
            retries=modal.Retries(
                max_retries=retries.max_retries,
                backoff_coefficient=retries.backoff_coefficient,
                initial_delay=retries.initial_delay,
                max_delay=retries.max_delay,
            )
            if retries.max_retries
            else None,
            secrets=secrets,
            env=built.env["train"],
        )(remote.train)
    if "job" in parts:
        built.env["job"] = {}
        built.job = app.function(
            **common,
            name="job",
            timeout=config.job_timeout,
            # The bot's Secrets only where the bot is: its /doppel train runs here.
            secrets=[*secrets, *(web_secrets if "web" in parts else [])],
        )(remote.job)
    if "engine" in parts:
        built.env["engine"] = {**SERVE_ENV, **run_json}
        built.engine = app.cls(
            **common,
            gpu=config.serve_gpu,
            memory=config.serve_memory,
            timeout=config.serve_timeout,
            secrets=secrets,
            env=built.env["engine"],
            scaledown_window=config.scaledown_window,
            min_containers=config.min_containers,
            max_containers=config.max_containers,
        )(modal.concurrent(max_inputs=config.engine_concurrency)(remote.Engine))
    if "web" in parts:
        built.env["web"] = dict(run_json)
        built.web = app.cls(
            **common,
            timeout=config.web_timeout,
            secrets=web_secrets,
            env=built.env["web"],
            scaledown_window=config.scaledown_window,
            min_containers=config.min_containers,
            enable_memory_snapshot=config.memory_snapshot,
        )(
            modal.concurrent(max_inputs=config.web_concurrency)(
                remote.Web if config.memory_snapshot else remote.WebNoSnapshot
            )
        )
    return built
