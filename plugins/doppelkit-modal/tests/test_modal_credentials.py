"""Without Modal credentials every command that needs Modal stops at once: one line saying what
to run, exit status 2, before any ingest or upload — never a made-up token (which hangs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doppelkit.testing import run_cli
from doppelkit_modal.credentials import credentials

WITHOUT_MODAL = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}

# (name, env, ~/.modal.toml contents or None) — what a user may have
SCENARIOS: list[tuple[str, dict[str, str], str | None]] = [
    ("nothing", {}, None),
    ("env token", {"MODAL_TOKEN_ID": "ak-1", "MODAL_TOKEN_SECRET": "as-1"}, None),
    ("half env token", {"MODAL_TOKEN_ID": "ak-1"}, None),
    ("profile token", {}, '[default]\ntoken_id = "ak-1"\ntoken_secret = "as-1"\n'),
    ("profile without token", {}, '[work]\nactive = true\nenvironment = "main"\n'),
    (
        "active profile of two",
        {},
        '[a]\ntoken_id = "ak-a"\ntoken_secret = "as-a"\n'
        '[b]\nactive = true\ntoken_id = "ak-b"\ntoken_secret = "as-b"\n',
    ),
    (
        "other profile chosen",
        {"MODAL_PROFILE": "a"},
        '[a]\nenvironment = "x"\n[b]\nactive = true\ntoken_id = "k"\ntoken_secret = "s"\n',
    ),
    ("unknown profile", {"MODAL_PROFILE": "nope"}, '[default]\ntoken_id = "ak-1"\ntoken_secret = "as-1"\n'),
    ("two active", {}, "[a]\nactive = true\n[b]\nactive = true\n"),
    ("none active of two", {}, '[a]\ntoken_id = "k"\n[b]\ntoken_id = "k"\n'),
    (
        "oauth",
        {"MODAL_OAUTH_REFRESH_TOKEN": "r", "MODAL_OAUTH_CLIENT_ID": "c", "MODAL_OAUTH_CLIENT_SECRET": "s"},
        None,
    ),
    ("oauth without secret", {"MODAL_OAUTH_REFRESH_TOKEN": "r", "MODAL_OAUTH_CLIENT_ID": "c"}, None),
    (
        "token and oauth",
        {"MODAL_TOKEN_ID": "a", "MODAL_TOKEN_SECRET": "b", "MODAL_OAUTH_REFRESH_TOKEN": "r"},
        None,
    ),
    ("inside a container", {"MODAL_IS_REMOTE": "1"}, None),
]


def _environment(tmp_path: Path, env: dict[str, str], toml: str | None) -> dict[str, str]:
    path = tmp_path / "modal.toml"
    if toml is not None:
        path.write_text(toml)
    return {**WITHOUT_MODAL, "HOME": str(tmp_path), "MODAL_CONFIG_PATH": str(path), **env}


MODALS_VIEW = """
import importlib, json, os, sys
scenarios = json.loads(sys.argv[1])
import modal.config as mc
from modal.exception import InvalidError
answers = []
for env in scenarios:
    for key in [k for k in os.environ if k.startswith("MODAL_")]:
        del os.environ[key]
    os.environ.update(env)
    importlib.reload(mc)
    if os.environ.get("MODAL_IS_REMOTE") == "1":
        answers.append(True); continue
    try:
        mc._check_config()
        if os.environ.get("MODAL_PROFILE") and mc._profile not in mc._user_config:
            answers.append(False); continue
        get = mc.config.get
        token = bool(get("token_id")) and bool(get("token_secret"))
        keys = ("oauth_refresh_token", "oauth_client_id", "oauth_client_secret", "oauth_jwt_key")
        oauth = [get(k) for k in keys]
        has_token = bool(get("token_id") or get("token_secret"))
        if has_token and any(oauth):
            answers.append(False)
        elif any(oauth):
            answers.append(bool(oauth[0] and oauth[1] and bool(oauth[2]) != bool(oauth[3])))
        else:
            answers.append(token)
    except InvalidError:
        answers.append(False)
print(json.dumps(answers))
"""


def test_the_answer_matches_modals_own_reading_of_the_same_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, envs = [], []
    for i, (_name, env, toml) in enumerate(SCENARIOS):
        folder = tmp_path / str(i)
        folder.mkdir()
        full = _environment(folder, env, toml)
        envs.append({k: v for k, v in full.items() if k.startswith("MODAL_")})
        for key in [k for k in os.environ if k.startswith("MODAL_")]:
            monkeypatch.delenv(key)
        for key, value in full.items():
            if key.startswith("MODAL_") or key == "HOME":
                monkeypatch.setenv(key, value)
        started = time.perf_counter()
        ours.append(credentials().ok)
        assert time.perf_counter() - started < 0.05
    theirs = subprocess.run(
        [sys.executable, "-c", MODALS_VIEW, json.dumps(envs)],
        env=WITHOUT_MODAL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert theirs.returncode == 0, theirs.stderr[-2000:]
    expected = json.loads(theirs.stdout)
    assert dict(zip([s[0] for s in SCENARIOS], ours, strict=True)) == dict(
        zip([s[0] for s in SCENARIOS], expected, strict=True)
    )
    assert ours == [
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        False,
        False,
        False,
        True,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("nothing", "Modal credentials not found: run `modal setup`"),
        ("half env token", "only one of MODAL_TOKEN_ID and MODAL_TOKEN_SECRET is set"),
        ("unknown profile", "Modal profile 'nope' (MODAL_PROFILE) is not in"),
        ("two active", "several Modal profiles are active"),
        ("oauth without secret", "OAuth credentials are incomplete"),
    ],
)
def test_each_problem_says_what_to_do(
    name: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, toml = next((e, t) for n, e, t in SCENARIOS if n == name)
    for key in [k for k in os.environ if k.startswith("MODAL_")]:
        monkeypatch.delenv(key)
    for key, value in _environment(tmp_path, env, toml).items():
        if key.startswith("MODAL_") or key == "HOME":
            monkeypatch.setenv(key, value)
    found = credentials()
    assert not found.ok and says in found.problem and "\n" not in found.problem


@pytest.mark.parametrize(
    "args",
    [
        ["+backend=modal", "persona.user=maya"],
        ["train", "+backend=modal", "persona.user=maya"],
        ["serve", "+backend=modal", "frontend=bolt"],
        ["chat", "+backend=modal", "persona.user=maya"],
    ],
)
def test_the_real_cli_stops_in_under_5_seconds_with_one_line_and_status_2(
    args: list[str], tmp_path: Path
) -> None:
    empty_home, doppel_home = tmp_path / "user-home", tmp_path / "doppel"
    empty_home.mkdir()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "doppelkit.cli", *args, f"home={doppel_home}"],
        env={**WITHOUT_MODAL, "HOME": str(empty_home), "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr[-2000:]
    assert elapsed < 5, f"took {elapsed:.1f}s"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "modal setup" in lines[0] and "MODAL_TOKEN_ID" in lines[0] and "MODAL_TOKEN_SECRET" in lines[0]
    assert "Traceback" not in result.stderr
    assert not doppel_home.exists(), "nothing was ingested or written before the check"
    assert list(empty_home.iterdir()) == [], "and nothing written to the user's home (no ~/.modal.toml)"


def test_validate_and_cfg_need_no_credentials(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "MODAL_CONFIG_PATH": str(tmp_path / "absent.toml")}
    assert (
        run_cli(["validate", "+backend=modal", f"home={tmp_path / 'h'}"], env=env, cwd=tmp_path).returncode
        == 0
    )
