"""``doppelkit chat`` with the peft engine, against personas published under home."""

from __future__ import annotations

import pytest
from engine_testkit import ERIK, MAYA, build_tiny_base, publish_random_adapter

from doppelkit.home import Home
from doppelkit.testing import run_cli


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A home with two trained tiny personas (random adapters in the published layout)."""
    home = Home.at(tmp_path_factory.mktemp("chat") / "home")
    base = build_tiny_base(home)
    publish_random_adapter(home, base, MAYA, seed=11)
    publish_random_adapter(home, base, ERIK, seed=12)
    return home


def test_doppelkit_chat_from_piped_stdin(trained_home: Home) -> None:
    args = ["chat", "persona.user=maya", f"home={trained_home.root}", "engine.temperature=0"]
    result = run_cli([*args, "engine.max_new_tokens=6"], input="hi\nhow are you\n", timeout=120)
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("\n\n")
    assert blocks[-1] == "" and len(blocks) == 3, result.stdout
    for block in blocks[:2]:
        assert block.startswith("maya: ") and len(block) > len("maya: "), block
    assert "chatting with maya (U0MAYA, adapter v1)" in result.stderr
    assert "Warning" not in result.stderr and "deprecated" not in result.stderr, "no library warnings"


def test_doppelkit_chat_with_an_unknown_persona(trained_home: Home) -> None:
    result = run_cli(["chat", "persona.user=zed", f"home={trained_home.root}"], input="hi\n", timeout=120)
    assert result.returncode == 2
    assert "No trained persona matches persona.user='zed'" in result.stderr
    assert "maya (U0MAYA" in result.stderr and "Traceback" not in result.stderr
