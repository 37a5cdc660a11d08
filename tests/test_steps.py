"""Steps travel as data: the run configuration round-trips through plain data, and every step
pickles with its arguments, so any backend (another process, another machine) can run it."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from doppelkit import steps
from doppelkit.cli import VERB_NEEDS
from doppelkit.config import RunConfig, compose, validate
from doppelkit.plugins import build_registries, get_plugin_manager


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunConfig:
    registries = build_registries(get_plugin_manager())
    home = tmp_path_factory.mktemp("steps") / "home"
    cfg = compose(
        [f"home={home}", "persona.user=maya", "source=slack", "source.token=xoxb-not-a-real-token",
         "dataset.eval_fraction=0.2", "+backend=process", "trainer.rank=4"],
        registries,
    )  # fmt: skip
    return validate(cfg, registries)


def test_the_run_is_plain_json_data(run: RunConfig) -> None:
    data = run.to_data()
    assert json.loads(json.dumps(data)) == data
    assert data["home"] == str(run.settings.home)
    assert data["backend"] == {"name": "process", "device": "auto"}
    assert data["source"]["token"] == "xoxb-not-a-real-token", "secrets travel in the clear, to the step"


def test_the_run_comes_back_from_its_data(run: RunConfig) -> None:
    again = validate(run.to_data(), build_registries(get_plugin_manager()))
    assert again.settings == run.settings
    assert again.to_data() == run.to_data()
    for kind, selection in run.selections.items():
        assert again[kind].name == selection.name and again[kind].config == selection.config
    assert again["source"].config.token.get_secret_value() == "xoxb-not-a-real-token"


def test_validating_data_never_changes_the_callers_dict(run: RunConfig) -> None:
    data = run.to_data()
    before = json.dumps(data, sort_keys=True)
    validate(data, build_registries(get_plugin_manager()))
    assert json.dumps(data, sort_keys=True) == before


@pytest.mark.parametrize(
    ("step", "arguments"),
    [
        (steps.ingest, lambda data: ((data,), {})),
        (steps.train, lambda data: ((data, "T0TEAM", "U0MAYA"), {"device": None})),
        (steps.serve, lambda data: ((data,), {"device": "cpu"})),
    ],
)
def test_every_step_pickles_with_its_arguments(run: RunConfig, step: object, arguments: object) -> None:
    args, kwargs = arguments(run.to_data())  # type: ignore[operator]
    payload = pickle.dumps((step, args, kwargs))
    again, args_again, kwargs_again = pickle.loads(payload)
    assert again is step, "a step is a module-level function: it pickles by reference"
    assert args_again == args and kwargs_again == kwargs


def test_a_step_needs_only_what_its_job_needs(tmp_path: Path) -> None:
    """An ingest step validates without the trainer's or the engine's section."""
    registries = build_registries(get_plugin_manager())
    data = validate(compose([f"home={tmp_path}"], registries), registries, VERB_NEEDS["ingest"]).to_data()
    for kind in ("trainer", "engine", "frontend"):
        data.pop(kind)
    assert validate(data, registries, steps.INGEST_NEEDS).settings.home == tmp_path.resolve()
