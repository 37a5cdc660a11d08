"""The `doppelkit` command as users run it: real subprocesses, exit codes, output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from doppelkit.testing import run_cli

HEAVY = ("torch", "transformers", "slack_sdk", "slack_bolt", "modal", "peft", "sqlalchemy")


def test_import_is_light() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import doppelkit"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()}
    assert not imported & set(HEAVY)


def test_help_is_light_and_lists_verbs_and_groups(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom doppelkit.cli import main\nsys.argv=['doppelkit','--help']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        f"print('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    for word in ("ingest", "train", "chat", "serve", "validate", "plugins", "source:", "formatter:"):
        assert word in result.stdout
    assert list(tmp_path.iterdir()) == [], "--help writes nothing"


def test_validate_unknown_source_lists_available(tmp_path: Path) -> None:
    result = run_cli(["validate", "source=nope", f"home={tmp_path}"])
    assert result.returncode == 2
    assert "Unknown source 'nope'" in result.stderr
    assert "slack_export" in result.stderr and "jsonl" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sourc=x", "sourc"),
        ("engine.top_p=5", "engine.top_p"),
        ("persona.usr=maya", "persona.usr"),
        ("formatter.bogus_option=1", "formatter.bogus_option"),
    ],
)
def test_user_mistakes_exit_2_without_traceback(override: str, expected: str, tmp_path: Path) -> None:
    result = run_cli(["validate", override, f"home={tmp_path}"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("installed", [True, False])
def test_plus_backend_modal_composes_and_without_the_plugin_names_the_extra(
    tmp_path: Path, installed: bool
) -> None:
    # Without the plugin (a core-only install) the preset still composes; validation then
    # names the extra. With it (the checkout's venv), the plugin's keys are there too.
    env = {} if installed else {"DOPPELKIT_BLOCK_PLUGINS": "modal"}
    shown = run_cli(["--cfg", "job", "+backend=modal"], cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "backend:\n  name: modal" in shown.stdout
    assert ("train_gpu: H100" in shown.stdout) == installed
    checked = run_cli(["validate", "+backend=modal", f"home={tmp_path}"], cwd=tmp_path, env=env)
    if installed:
        assert checked.returncode == 0, checked.stderr
        assert "backend=modal" in checked.stderr
    else:
        assert checked.returncode == 2
        assert 'pip install "doppelkit[modal]"' in checked.stderr


def test_plugins_lists_every_kind() -> None:
    table = run_cli(["plugins"])
    assert table.returncode == 0, table.stderr
    for kind in ("sources", "formatters", "trainers", "backends", "frontends"):
        assert f"{kind}:" in table.stdout
    listing = json.loads(run_cli(["plugins", "--json"]).stdout)
    assert set(listing["components"]) == {"source", "formatter", "trainer", "engine", "backend", "frontend"}
    assert {"name": "local", "plugin": "doppelkit.builtins.backends"} in listing["components"]["backend"]


def test_plugins_piped_are_plain_rows_never_wrapped() -> None:
    piped = run_cli(["plugins"], env={"COLUMNS": "40"})  # stdout is a pipe here
    assert piped.returncode == 0, piped.stderr
    rows = piped.stdout.splitlines()
    lora = next(row for row in rows if row.startswith("lora\t"))
    assert lora.split("\t") == ["lora", "doppelkit-lora", lora.split("\t")[2], "trainer: lora; engine: peft",
                                 "forget_person, forget_team, locate_base"]  # fmt: skip
    assert "│" not in piped.stdout and "engines: peft, vllm" in rows


def test_multirun_sweeps_and_writes_only_under_home(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    home = tmp_path / "home"
    result = run_cli(["validate", "-m", "formatter=chat,alpaca", f"home={home}"], cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("configuration is valid") == 2
    assert list(cwd.iterdir()) == []


def test_validate_writes_nothing(tmp_path: Path) -> None:
    result = run_cli(["validate", f"home={tmp_path / 'home'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_plugins_conflict_is_named_without_traceback(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from doppelkit import cli, hookimpl, plugins
    from doppelkit.builtins.backends import LocalBackend

    class Clash:
        @hookimpl
        def register_backends(self, register):  # type: ignore[no-untyped-def]
            register(LocalBackend)

    pm = plugins.get_plugin_manager(load_entrypoints=False, plugins=[Clash()])
    monkeypatch.setattr(plugins, "default_plugin_manager", lambda: pm)
    with pytest.raises(SystemExit) as exited:
        cli.main(["plugins"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "Two plugins register a backend named 'local'" in err and "Traceback" not in err


@pytest.mark.parametrize("override", ["dataset.path=/proc/nope/x.jsonl", "home=/proc/doppelkit-home"])
def test_unwritable_places_are_a_usage_error(override: str, tmp_path: Path) -> None:
    home = [] if override.startswith("home=") else [f"home={tmp_path}"]
    result = run_cli(
        ["ingest", "persona.user=maya", override, *home], env={"DOPPELKIT_LOAD_PLUGINS": "slack"}
    )
    assert result.returncode == 2, result.stderr
    assert "/proc/" in result.stderr and "Traceback" not in result.stderr
