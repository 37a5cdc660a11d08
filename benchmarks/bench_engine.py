"""The persona engine: one base for many personas, adapter switching, mixed batches.

Run: .venv/bin/pytest benchmarks/bench_engine.py -s   (or: .venv/bin/python benchmarks/bench_engine.py)

A randomly initialised tiny model (the ``model=tiny`` shape) with a byte-level tokenizer, and
random persona adapters (rank 16, all linear layers, as the trainer's defaults) published in the
real artifact layout. Greedy decoding and ``ignore_eos`` (every reply runs to max_new_tokens),
so requests do the same work every time and latencies compare like with like. On CPU always;
on CUDA too when a GPU is present.

Baselines are in the same run (see README): a warm reply for the cold one, a one-persona batch
for the mixed one.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from doppelkit.home import Home
from doppelkit.models import AdapterManifest, Message, Persona, Thread, User
from doppelkit.testing.helpers import make_context

PERSONAS = [Persona(team="T0BENCH", user=User(id=f"U0P{i}", display_name=f"p{i}")) for i in range(8)]
CORPUS = [
    "did the deploy go out? yep shipped it this morning, all green so far",
    "can someone review my PR? on it, give me ten minutes and I'll leave comments",
    "why is CI red again? flaky test again, I'll rerun it",
    "lunch at noon? sure, see you at the usual place",
] * 8
QUESTIONS = ["did the deploy go out?", "lunch at noon?", "why is CI red again?", "who owns billing?"]
COLD_TARGET, MIXED_TARGET = 1.5, 0.8


def build_home(root: Path, n_personas: int) -> Home:
    """A random tiny base (in the tiny builder's cache layout) and ``n_personas`` adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from doppelkit import artifacts
    from doppelkit_lora.model.tiny import (
        MARKER,
        TINY_NAME,
        TinyModelConfig,
        build_model,
        tiny_dir,
        train_tokenizer,
    )

    home = Home.at(root)
    config = TinyModelConfig(pretrain_steps=0)
    key = "bench"
    path = tiny_dir(home, key)
    path.mkdir(parents=True)
    tokenizer = train_tokenizer(CORPUS, config)
    tokenizer.save_pretrained(path)
    build_model(tokenizer, config).save_pretrained(path, safe_serialization=True)
    (path / MARKER).write_text('{"key": "bench"}', encoding="utf-8")
    for i, persona in enumerate(PERSONAS[:n_personas]):
        torch.manual_seed(i)
        lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(path), lora)
        manifest = AdapterManifest(
            version="v0",
            team=persona.team,
            persona_id=persona.id,
            persona_name=persona.label,
            base_model=TINY_NAME,
            model_revision=key,
            trainer="lora",
            formatter="chat",
            template_hash="bench",
            dataset_hash=str(i),
            doppelkit_version="bench",
        )
        artifacts.publish(
            home,
            persona.team,
            persona.id,
            partial(save_adapter, model),
            manifest,
        )
    return home


def save_adapter(model: Any, directory: Path) -> None:
    model.save_pretrained(str(directory), safe_serialization=True)


def ask(persona: Persona, text: str) -> Thread:
    return Thread(
        team=persona.team,
        channel="C0BENCH",
        ts="1.000000",
        messages=[Message(ts="1.000000", user="U0ASKER", text=text)],
        user_labels={"U0ASKER": "Ann"},
    )


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(device: str, n_personas: int = 4, new_tokens: int = 32) -> dict[str, Any]:
    from doppelkit_lora.serve.engine import PeftEngine, PeftEngineConfig

    with tempfile.TemporaryDirectory() as tmp:
        home = build_home(Path(tmp) / "home", 2 * n_personas)
        context = make_context(home.root)
        context.device = device
        config = PeftEngineConfig(
            max_resident=2 * n_personas,
            temperature=0,
            repetition_penalty=1.0,
            max_new_tokens=new_tokens,
            ignore_eos=True,  # every reply runs to max_new_tokens: equal work to compare
        )
        one_token = config.model_copy(update={"max_new_tokens": 1})
        group, fresh = PERSONAS[:n_personas], PERSONAS[n_personas : 2 * n_personas]
        with PeftEngine(config, context) as engine:
            for persona in group:  # N personas, and the base is loaded once
                engine.reply(persona, ask(persona, QUESTIONS[0]))
            base_loads = engine.stats.base_loads
            cold_loads = list(engine.stats.adapter_load_seconds)[1:]  # the first waited for the base

            cold, warm = [], []
            for persona in fresh:  # not loaded yet, base resident
                thread = ask(persona, QUESTIONS[1])
                cold.append(timed(partial(engine.reply, persona, thread)))
                warm.append(timed(partial(engine.reply, persona, thread)))

            requests = [
                (group[i % n_personas], ask(group[i % n_personas], q)) for i, q in enumerate(QUESTIONS * 2)
            ]
            single = [(group[0], ask(group[0], q)) for q in QUESTIONS * 2]
            engine.reply_many(requests)  # warm-up of both shapes
            engine.reply_many(single)
            rates: dict[str, list[float]] = {"mixed": [], "single": []}
            tokens: dict[str, int] = {}
            for _ in range(3):
                for name, batch in (("mixed", requests), ("single", single)):
                    before = engine.stats.generated_tokens
                    seconds = timed(partial(engine.reply_many, batch))
                    tokens[name] = engine.stats.generated_tokens - before
                    rates[name].append(tokens[name] / seconds)
        with PeftEngine(one_token, context) as switcher:
            for persona in group:
                switcher.reply(persona, ask(persona, QUESTIONS[2]))  # all resident
            same = [timed(partial(switcher.reply, group[0], ask(group[0], QUESTIONS[2]))) for _ in range(8)]
            switching = [
                timed(partial(switcher.reply, group[i % 2], ask(group[i % 2], QUESTIONS[2])))
                for i in range(8)
            ]
    mixed, single_rate = statistics.median(rates["mixed"]), statistics.median(rates["single"])
    return {
        "device": device,
        "personas": n_personas,
        "base_loads": base_loads,
        "cold_load_ms": 1000 * statistics.median(cold_loads),
        "switch_ms": 1000 * statistics.median(switching),
        "same_persona_ms": 1000 * statistics.median(same),
        "cold_reply_ms": 1000 * statistics.median(cold),
        "warm_reply_ms": 1000 * statistics.median(warm),
        "cold_ratio": statistics.median(c / w for c, w in zip(cold, warm, strict=True)),
        "mixed_tps": mixed,
        "single_tps": single_rate,
        "mixed_ratio": mixed / single_rate,
        "batch": len(QUESTIONS) * 2,
        "tokens": tokens,
    }


def print_table(results: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Persona engine (tiny model, random weights, greedy)")
    table.add_column("measure")
    for r in results:
        table.add_column(r["device"], justify="right")
    table.add_column("target")
    rows = [
        ("base-model loads for N personas", lambda r: f"{r['base_loads']} (N={r['personas']})", "exactly 1"),
        ("cold persona load, base resident", lambda r: f"{r['cold_load_ms']:.1f} ms", "reported"),
        ("warm switch (1-token reply, alternating)", lambda r: f"{r['switch_ms']:.1f} ms", "reported"),
        ("  same persona (1-token reply)", lambda r: f"{r['same_persona_ms']:.1f} ms", "baseline"),
        ("reply, persona not loaded", lambda r: f"{r['cold_reply_ms']:.0f} ms", ""),
        ("reply, persona warm", lambda r: f"{r['warm_reply_ms']:.0f} ms", ""),
        ("cold ÷ warm reply latency", lambda r: f"{r['cold_ratio']:.2f}×", f"≤ {COLD_TARGET}×"),
        ("tokens/s, batch mixing N personas", lambda r: f"{r['mixed_tps']:.0f}", ""),
        ("tokens/s, batch of one persona", lambda r: f"{r['single_tps']:.0f}", ""),
        ("  tokens per batch (mixed / single)", lambda r: "{mixed} / {single}".format(**r["tokens"]), ""),
        ("mixed ÷ single-persona throughput", lambda r: f"{r['mixed_ratio']:.2f}×", f"≥ {MIXED_TARGET}×"),
    ]
    for label, cell, target in rows:
        table.add_row(label, *[cell(r) for r in results], target)
    console.print(table)


def devices() -> list[str]:
    import torch

    return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def run() -> list[dict[str, Any]]:
    results = [measure(device) for device in devices()]
    print_table(results, Console(width=120))
    return results


def test_engine_benchmark() -> None:
    for result in run():
        assert result["base_loads"] == 1
        assert result["cold_ratio"] <= COLD_TARGET, result
        assert result["mixed_ratio"] >= MIXED_TARGET, result


if __name__ == "__main__":
    run()
