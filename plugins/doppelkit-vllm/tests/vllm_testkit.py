"""Helpers of the vLLM engine's tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

from doppelkit.home import Home
from doppelkit.models import Message, Persona, Thread, User
from doppelkit_lora.model.tiny import TinyModelConfig
from doppelkit_lora.serve.engine import PeftEngine, PeftEngineConfig
from doppelkit_vllm.engine import VllmEngine, VllmEngineConfig

TEAM = "T0TEST"
MAYA = Persona(team=TEAM, user=User(id="U0MAYA", display_name="maya"))
ERIK = Persona(team=TEAM, user=User(id="U0ERIK", display_name="erik"))
JO = Persona(team=TEAM, user=User(id="U0JO", display_name="jo"))
ZED = Persona(team=TEAM, user=User(id="U0ZED", display_name="zed"))  # retrained by a test
PERSONAS = (MAYA, ERIK, JO, ZED)
SEEDS = {MAYA.id: 11, ERIK.id: 12, JO.id: 13, ZED.id: 12}  # zed starts as erik, retrains as jo
ANN = "U0ANN"

# vLLM's CPU attention needs a head size of 32 or more: 64 wide, 2 heads.
VLLM_TINY = TinyModelConfig(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=256,
)

SETTINGS: dict[str, Any] = {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 12}
GREEDY = VllmEngineConfig(
    **SETTINGS,
    dtype="float32",
    max_model_len=256,
    max_loras=4,
    max_lora_rank=8,
    kv_cache_memory_bytes=64 << 20,  # the same on every machine (not a fraction of its RAM)
    enforce_eager=True,
    max_num_seqs=16,
)

# engine=vllm on the command line as these tests run it: GREEDY's engine settings.
VLLM_ON_CPU = [
    "engine=vllm",
    "engine.enforce_eager=true",
    f"engine.kv_cache_memory_bytes={GREEDY.kv_cache_memory_bytes}",
    f"engine.max_lora_rank={GREEDY.max_lora_rank}",
]


def make_vllm(home: Home, config: VllmEngineConfig = GREEDY) -> VllmEngine:
    from doppelkit.testing.helpers import make_context

    return VllmEngine(config, make_context(home.root))


def make_peft(home: Home) -> PeftEngine:
    from doppelkit.testing.helpers import make_context

    context = make_context(home.root)
    context.device = "cpu"
    return PeftEngine(PeftEngineConfig(**SETTINGS, max_resident=4), context)


def thread(text: str, *, persona: Persona = MAYA) -> Thread:
    """A one-message thread: Ann asks the persona something."""
    return Thread(
        team=persona.team,
        channel="C0GENERAL",
        channel_name="general",
        ts="100.000000",
        messages=[Message(ts="100.000000", user=ANN, text=text)],
        user_labels={ANN: "Ann"},
    )
