"""After ingest, every later step finds the persona by the same names ingest accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from doppelkit.testing import run_cli

ENV = {"DOPPELKIT_LOAD_PLUGINS": "slack"}  # ingest and the dataset lookup need only the source


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    done = run_cli(["ingest", "persona.user=erik", f"home={home}"], env=ENV)
    assert done.returncode == 0, done.stderr
    return home


@pytest.mark.parametrize("query", ["erik", "Erik L", "Erik Lindqvist", "U0ERIK0002", "ERIK LINDQVIST"])
def test_train_finds_the_dataset_by_any_name(home: Path, query: str) -> None:
    # `validate`-like dry run of the lookup: an unknown trainer stops right after the dataset is found.
    from doppelkit.config import compose, validate
    from doppelkit.home import Home
    from doppelkit.pipeline import find_dataset
    from doppelkit.plugins import build_registries, get_plugin_manager

    registries = build_registries(get_plugin_manager())
    run = validate(compose([f"persona.user={query}", f"home={home}"], registries), registries)
    persona, paths, report = find_dataset(run, Home.at(home))
    assert persona.id == "U0ERIK0002" and persona.user.real_name == "Erik Lindqvist"
    assert paths.train.is_file() and report.persona_user is not None


def test_unknown_name_lists_what_has_a_dataset(home: Path) -> None:
    result = run_cli(["train", "persona.user=nobody-here", f"home={home}"])
    assert result.returncode == 2
    assert "with a dataset under home" in result.stderr and "U0ERIK0002" in result.stderr


def test_reingest_without_held_out_split_removes_the_stale_one(tmp_path: Path) -> None:
    from doppelkit.pipeline import DatasetPaths, held_out_dataset

    out = tmp_path / "erik.jsonl"
    args = ["ingest", "persona.user=erik", f"home={tmp_path / 'home'}", f"dataset.path={out}"]
    assert run_cli(args, env=ENV).returncode == 0
    paths = DatasetPaths.beside(out)
    assert paths.eval.is_file()
    assert run_cli([*args, "dataset.eval_fraction=0"], env=ENV).returncode == 0
    assert not paths.eval.exists()
    from doppelkit.models import DatasetReport

    report = DatasetReport.model_validate_json(paths.report.read_text())
    assert held_out_dataset(paths, report) is None
