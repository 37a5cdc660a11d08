"""The app builds from configuration alone (no token, no network), and each function's
hardware, limits, retries, Volume, Secrets, autoscaling and image are what ``backend.*`` says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modal_testkit import validated

from doppelkit.plugins import default_plugin_manager
from doppelkit_modal.app import PARTS, BuiltApp, build_app, image_env
from doppelkit_modal.config import ModalConfig
from doppelkit_modal.hosting import remote_run_data
from doppelkit_modal.image import resolve_recipe, run_distributions
from doppelkit_modal.remote_env import RUN_ENV
from doppelkit_modal.testing.introspect import closure, env_of, impl, info, secret_names

CONFIG = (
    "+backend=modal",
    "frontend=bolt",
    "backend.app_name=acme-doppel",
    "backend.volume=acme-home",
    "backend.secrets=[huggingface]",
    "backend.web_secrets=[acme-slack,acme-db]",
    "backend.train_gpu=A100-80GB:2",
    "backend.train_timeout=7200",
    "backend.train_memory=65536",
    "backend.retries.max_retries=3",
    "backend.retries.initial_delay=5",
    "backend.serve_gpu=L4",
    "backend.serve_timeout=120",
    "backend.max_containers=4",
    "backend.scaledown_window=120",
    "backend.engine_concurrency=6",
    "backend.web_concurrency=40",
    "backend.job_timeout=3600",
    "backend.region=us-east",
)


def build(*overrides: str, parts: tuple[str, ...] = PARTS) -> tuple[BuiltApp, ModalConfig]:
    run = validated([*CONFIG, *overrides])
    config = run["backend"].config
    assert isinstance(config, ModalConfig)
    recipe = resolve_recipe(
        run_distributions(run, default_plugin_manager().hook),
        python_version=config.python_version,
        env=image_env(config),
    )
    return build_app(config, remote_run_data(run.to_data(), config), recipe, parts), config


@pytest.fixture(scope="module")
def built() -> BuiltApp:
    return build()[0]


def test_the_app_holds_its_four_parts_and_ships_the_image_as_its_only_code(built: BuiltApp) -> None:
    assert impl(built.app)._name == "acme-doppel"
    state = impl(built.app)._local_state_attr
    assert state.include_source_default is False, "no auto-mounted source: the image says what runs"
    assert sorted(state.functions) == ["Engine.*", "Web.*", "job", "train"]
    for part in (built.train, built.job, built.engine, built.web):
        assert impl(closure(part)["image"]) is impl(built.image)


def test_train_runs_on_the_training_gpu_with_retries_that_resume(built: BuiltApp) -> None:
    found = info(built.train)
    assert found.gpus == [("A100-80GB", 2)]
    assert (found.timeout, found.memory_mib, found.regions) == (7200, 65536, ["us-east"])
    assert found.max_retries == 3
    assert {path: m.name for path, m in found.volumes.items()} == {"/doppelkit-home": "acme-home"}
    assert secret_names(built.train) == ["huggingface"], "Slack's Secrets never reach training"
    policy = closure(built.train)["retry_policy"]
    assert (policy.retries, policy.backoff_coefficient, policy.initial_delay_ms, policy.max_delay_ms) == (
        3,
        2.0,
        5000,
        60000,
    )
    env = env_of(built.train)
    assert env["TTY_INTERACTIVE"] == "1", "progress bars stream back"
    assert RUN_ENV not in env, "the run travels as the call's argument"
    assert found.web_info is None


def test_no_retries_means_none(tmp_path: Path) -> None:
    app, _ = build("backend.retries.max_retries=0", parts=("train",))
    assert info(app.train).max_retries is None and closure(app.train)["retry_policy"] is None


def test_the_job_runs_on_a_cpu_with_the_bots_secrets(built: BuiltApp) -> None:
    found = info(built.job)
    assert found.gpus == [] and found.timeout == 3600
    assert secret_names(built.job) == ["huggingface", "acme-slack", "acme-db"]
    assert list(found.volumes) == ["/doppelkit-home"]


def test_the_engine_class_scales_to_zero_on_the_serving_gpu(built: BuiltApp) -> None:
    found = info(built.engine)
    assert found.gpus == [("L4", 1)] and found.timeout == 120
    assert sorted(found.method_names) == ["current_version", "personas", "reply", "stream"]
    assert found.concurrency_info.max_inputs == 6
    assert secret_names(built.engine) == ["huggingface"]
    autoscaler = closure(built.engine)["autoscaler_settings"]
    assert (autoscaler.min_containers, autoscaler.max_containers, autoscaler.scaledown_window) == (0, 4, 120)
    env = env_of(built.engine)
    assert env["HF_HUB_OFFLINE"] == "1"
    run = json.loads(env[RUN_ENV])
    assert run["home"] == "/doppelkit-home" and run["engine"]["name"] == "peft"
    assert run["backend"]["app_name"] == "acme-doppel"


def test_the_web_endpoint_is_a_snapshotted_cpu_class(built: BuiltApp) -> None:
    found = info(built.web)
    assert found.gpus == [] and found.max_retries is None and found.method_names == ["asgi"]
    assert found.concurrency_info.max_inputs == 40
    assert secret_names(built.web) == ["acme-slack", "acme-db"], "the GPU side's Secrets stay there"
    cells = closure(built.web)
    assert cells["enable_memory_snapshot"] is True
    assert cells["autoscaler_settings"].min_containers == 0
    methods = cells["method_definitions"]
    assert methods["asgi"].webhook_config.type != 0, "asgi is a web endpoint"
    assert json.loads(env_of(built.web)[RUN_ENV])["frontend"]["name"] == "bolt"


def test_keep_warm_and_no_snapshot_are_configurable() -> None:
    app, _ = build("backend.min_containers=1", "backend.memory_snapshot=false", parts=("engine", "web"))
    assert closure(app.engine)["autoscaler_settings"].min_containers == 1
    assert closure(app.web)["enable_memory_snapshot"] is False
    assert app.train is None and app.job is None


def test_a_training_app_holds_only_train_so_it_never_needs_the_bots_secrets() -> None:
    app, _ = build(parts=("train",))
    assert app.train is not None and (app.job, app.engine, app.web) == (None, None, None)
    without_bot, _ = build(parts=("train", "job", "engine"))
    assert secret_names(without_bot.job) == ["huggingface"], "no bot, no bot Secrets"


def test_unknown_parts_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown app parts"):
        build(parts=("train", "cron"))


def test_remote_bodies_do_not_use_postponed_annotations() -> None:
    """modal 1.6 reads class annotations when decorating: ``from __future__ import annotations``
    in the module of the bodies breaks it (``modal.parameter`` fails with a bare AttributeError)."""
    import doppelkit_modal.remote as remote

    source = Path(remote.__file__).read_text()
    assert "from __future__ import annotations" not in source.split('"""', 2)[-1]
