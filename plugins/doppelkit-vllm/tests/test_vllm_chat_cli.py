"""`doppelkit chat engine=vllm`: the terminal chat, through the command line, answers exactly
as with engine=peft."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vllm_testkit import MAYA, VLLM_ON_CPU

from doppelkit.home import Home
from doppelkit_lora.model.tiny import TinyBase


def chat(home: Home, *engine: str, persona: str = MAYA.label) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "doppelkit",
            "chat",
            f"persona.user={persona}",
            f"home={home.root}",
            "engine.temperature=0",
            "engine.repetition_penalty=1",
            "engine.max_new_tokens=12",
            *engine,
        ],
        input="did the deploy go out?\nlunch at noon?\nwhy is CI red again?\n",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_chat_with_engine_vllm_answers_as_engine_peft(published: tuple[Home, TinyBase]) -> None:
    home = published[0]
    vllm = chat(
        home,
        *VLLM_ON_CPU,
    )
    assert vllm.returncode == 0, vllm.stderr[-3000:]
    peft = chat(home, "engine=peft")
    assert peft.returncode == 0, peft.stderr[-3000:]
    assert vllm.stdout == peft.stdout, "same replies, and nothing but replies on stdout"
    assert vllm.stdout.count("\n\n") == 3, vllm.stdout


def test_a_persona_trained_by_the_lora_trainer_chats_on_engine_vllm(tmp_path: Path) -> None:
    """`doppelkit persona.user=maya` (the bundled sample workspace, the lora trainer, a tiny base
    in seconds), then the chat on both engines."""
    from doppelkit_lora.testing import SECONDS_TO_TRAIN

    home = Home.at(tmp_path / "home")
    # vLLM's CPU attention needs a head size of 32 or more: 64 wide, 2 heads.
    shape = [o for o in SECONDS_TO_TRAIN if not o.startswith("trainer.tiny.hidden_size=")]
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "doppelkit",
            "persona.user=maya",
            f"home={home.root}",
            *shape,
            "trainer.tiny.hidden_size=64",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    vllm = chat(
        home,
        *VLLM_ON_CPU,
        persona="maya",
    )
    assert vllm.returncode == 0, vllm.stderr[-3000:]
    peft = chat(home, "engine=peft", persona="maya")
    assert peft.returncode == 0, peft.stderr[-3000:]
    assert vllm.stdout == peft.stdout and vllm.stdout.count("\n\n") == 3, (vllm.stdout, peft.stdout)
