"""Mistakes Hydra would report in a dozen lines are one line with "did you mean", before any
work starts; keys that moved name their new place."""

from __future__ import annotations

from pathlib import Path

import pytest

from doppelkit.config import compose, validate
from doppelkit.errors import ConfigError
from doppelkit.plugins import build_registries, get_plugin_manager
from doppelkit.testing import run_cli


@pytest.fixture(scope="module")
def registries():  # type: ignore[no-untyped-def]
    return build_registries(get_plugin_manager())


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.rankk=3", "trainer.rankk: trainer=lora has no key 'rankk'; did you mean trainer.rank?"),
        ("engine.temprature=0", "engine=peft has no key 'temprature'; did you mean engine.temperature?"),
        ("dataset.eval_fractoin=0.2", "did you mean dataset.eval_fraction?"),
        ("model.nam=x", "did you mean model.name?"),
        ("foo=bar", "foo: unknown key; top-level keys:"),
        ("persona.usr=maya", "did you mean persona.user?"),
        ("model=nonexistent", "model=nonexistent: no such model preset; available: llama3_8b"),
        ("model=tinyy", "did you mean 'tiny'?"),
        ("formatter=chatt", "Unknown formatter 'chatt'. Available formatters: alpaca, chat. Did you mean"),
        ("store.url=sqlite:///x.db", "store.url moved to frontend.store_url"),
        ("model.tiny.hidden_size=64", "model.tiny.hidden_size moved to trainer.tiny.hidden_size"),
        ("model.load_in_4bit=true", "model.load_in_4bit moved to trainer.load_in_4bit"),
        ("formatter.eval_fraction=0.2", "formatter.eval_fraction moved to dataset.eval_fraction"),
        ("formatter.session_gap_minutes=5", "moved to dataset.session_gap_minutes"),
    ],
)  # fmt: skip
def test_one_line_naming_the_fix(registries, override: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as raised:
        compose([override], registries)
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message, "one problem, one line"


def test_the_key_is_checked_against_the_component_chosen_on_the_same_line(registries) -> None:  # type: ignore[no-untyped-def]
    compose(["trainer.rank=4", "formatter=alpaca", "formatter.system_prompt='You are {user}.'"], registries)
    with pytest.raises(ConfigError, match="formatter=alpaca has no key 'chat_template'"):
        compose(["formatter.chat_template=x", "formatter=alpaca"], registries)


def test_nested_component_keys_are_known(registries) -> None:  # type: ignore[no-untyped-def]
    compose(["trainer.tiny.hidden_size=64"], registries)
    with pytest.raises(ConfigError, match="did you mean trainer.tiny.hidden_size"):
        compose(["trainer.tiny.hiden_size=64"], registries)


def test_a_moved_key_in_a_config_file_names_the_new_key(registries, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = validate(compose([f"home={tmp_path}"], registries), registries).to_data()
    data["store"] = {"url": "sqlite:///x.db"}
    data["formatter"]["eval_fraction"] = 0.3
    with pytest.raises(ConfigError) as raised:
        validate(data, registries)
    assert "store moved to frontend.store_url" in str(raised.value)
    assert "formatter.eval_fraction moved to dataset.eval_fraction" in str(raised.value)


@pytest.mark.parametrize("override", ["trainer.rankk=3", "foo=bar", "model=nonexistent", "store.url=x"])
def test_the_cli_prints_one_line_and_exits_2(override: str, tmp_path: Path) -> None:
    result = run_cli(["validate", override, f"home={tmp_path}"])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "HYDRA_FULL_ERROR" not in result.stderr and "Traceback" not in result.stderr
