"""engine=vllm against engine=peft: tokens/s and time to first token at 1, 4 and 16 personas.

Run (vLLM lives in its own environment, see plugins/doppelkit-vllm/README.md):

    make bench-vllm                                            # CPU: tiny shape, here
    .venv-vllm/bin/python benchmarks/bench_vllm.py --device cuda   # GPU: random Llama-3-8B shape

Both engines serve the same home: a random base (the tiny shape on CPU; on CUDA a random
Llama-3-8B-shaped model in bf16 — no download) stored where the tiny builder keeps its bases,
and 16 random persona adapters (rank 16, every linear layer, as the trainer's defaults)
published in the real artifact layout. For each persona count N, 16 concurrent requests
(callers on their own threads, as the Slack bot's handlers) are spread round-robin over N
personas; greedy, ``ignore_eos`` (every reply runs to ``--max-new-tokens``), so both engines do
the same work. Each engine is started and warmed up (every adapter loaded once) before it is
timed, and runs one untimed concurrent round; each figure is the median of ``--repeats`` runs.
The baseline is the peft engine in the same run: the ratios are vllm ÷ peft for tokens/s
and peft ÷ vllm for time to first token (above 1: vLLM is better).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# The model shapes bench_train measures (this directory is on sys.path when a bench runs).
from bench_train import LLAMA3_8B_SHAPE, TINY_SHAPE

PERSONA_COUNTS = (1, 4, 16)
REQUESTS = 16
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
QUESTIONS = [
    "did the deploy go out?",
    "lunch at noon?",
    "why is CI red again?",
    "who owns the billing service?",
]


def build_home(root: Path, device: str, rank: int, n_personas: int) -> tuple[Any, list[Any]]:
    """A random base in the tiny builder's cache layout, and ``n_personas`` random adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from doppelkit import artifacts
    from doppelkit.home import Home
    from doppelkit.models import AdapterManifest, Persona, User
    from doppelkit_lora.model.tiny import BOS, CHAT_TEMPLATE, EOS, MARKER, PAD, SPECIAL_TOKENS, tiny_dir
    from doppelkit_lora.testing.engines import CORPUS, UNK

    home = Home.at(root / "home")
    path = tiny_dir(home, "bench")
    path.mkdir(parents=True, exist_ok=True)
    words = sorted({word for text in CORPUS for word in text.split()} | {"Ann:"})
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate([UNK, *words])}, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    cuda = device == "cuda"
    shape = LLAMA3_8B_SHAPE if cuda else {**TINY_SHAPE, "vocab_size": len(tokenizer)}
    config = LlamaConfig(
        **shape,
        max_position_embeddings=4096 if cuda else 1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if cuda else torch.float32)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(path, safe_serialization=True)
    (path / MARKER).write_text(json.dumps({"key": "bench"}), encoding="utf-8")
    lora = get_peft_model(
        model,
        LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LINEAR, task_type="CAUSAL_LM"),
    )
    personas = []
    for i in range(n_personas):
        persona = Persona(team="T0BENCH", user=User(id=f"U0P{i:02d}", display_name=f"p{i}"))
        torch.manual_seed(100 + i)
        with torch.no_grad():
            for name, param in lora.named_parameters():
                if "lora_" in name:
                    param.normal_(0, 0.02)
        manifest = AdapterManifest(
            version="v0",
            team=persona.team,
            persona_id=persona.id,
            persona_name=persona.label,
            base_model="tiny",
            model_revision="bench",
            trainer="lora",
            formatter="chat",
            template_hash="bench",
            dataset_hash=f"seed-{i}",
            doppelkit_version="bench",
        )
        artifacts.publish(
            home,
            persona.team,
            persona.id,
            lambda directory: lora.save_pretrained(str(directory), safe_serialization=True),
            manifest,
        )
        personas.append(persona)
    return home, personas  # the models go with this frame (freed before the engines start)


def thread_for(persona: Any, i: int) -> Any:
    from doppelkit.models import Message, Thread

    return Thread(
        team=persona.team,
        channel="C0BENCH",
        ts=f"{100 + i}.000000",
        messages=[Message(ts=f"{100 + i}.000000", user="U0ANN", text=QUESTIONS[i % len(QUESTIONS)])],
        user_labels={"U0ANN": "Ann"},
    )


def measure(engine: Any, personas: list[Any]) -> dict[str, float]:
    """REQUESTS concurrent streams over ``personas``: tokens/s, time to first token."""
    first: list[float] = [0.0] * REQUESTS
    errors: list[BaseException] = []
    tokens_before = engine.stats.generated_tokens
    start = time.perf_counter()

    def one(i: int) -> None:
        persona = personas[i % len(personas)]
        try:
            for chunk_number, _chunk in enumerate(engine.stream(persona, thread_for(persona, i))):
                if chunk_number == 0:
                    first[i] = time.perf_counter() - start
        except BaseException as exc:
            errors.append(exc)

    callers = [threading.Thread(target=one, args=(i,)) for i in range(REQUESTS)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    tokens = engine.stats.generated_tokens - tokens_before
    return {
        "tokens": tokens,
        "seconds": wall,
        "tokens_per_s": tokens / wall,
        "ttft_p50": statistics.median(first),
        "ttft_max": max(first),
    }


def run_engine(name: str, home: Any, personas: list[Any], args: argparse.Namespace) -> dict[int, Any]:
    from doppelkit.testing.helpers import make_context

    settings: dict[str, Any] = {
        "temperature": 0.0,
        "repetition_penalty": 1.0,
        "max_new_tokens": args.max_new_tokens,
        "ignore_eos": True,
    }
    context = make_context(home.root)
    if name == "peft":
        from doppelkit_lora.serve.engine import PeftEngine, PeftEngineConfig

        context.device = args.device
        engine: Any = PeftEngine(
            PeftEngineConfig(**settings, max_resident=len(personas), max_batch=REQUESTS), context
        )
    else:
        from doppelkit_vllm.engine import VllmEngine, VllmEngineConfig

        cpu = args.device == "cpu"
        engine = VllmEngine(
            VllmEngineConfig(
                **settings,
                max_loras=len(personas),
                max_lora_rank=args.rank,
                max_num_seqs=REQUESTS,
                dtype="float32" if cpu else "bfloat16",
                max_model_len=1024,
                kv_cache_memory_bytes=(512 << 20) if cpu else None,
                gpu_memory_utilization=0.85,
                enforce_eager=cpu,  # torch.compile on 2 cores would take longer than the run
            ),
            context,
        )
    results = {}
    try:
        started = time.perf_counter()
        for persona in personas:  # start the engine, load every adapter once: not timed
            engine.reply(persona, thread_for(persona, 0))
        print(f"  {name}: started and warmed up in {time.perf_counter() - started:.1f}s", flush=True)
        measure(engine, personas)  # one concurrent round first: allocator, thread pools, caches
        for count in PERSONA_COUNTS:
            runs = [measure(engine, personas[:count]) for _ in range(args.repeats)]
            results[count] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            r = results[count]
            print(
                f"  {name} {count:>2} personas: {r['tokens_per_s']:8.1f} tok/s, "
                f"TTFT p50 {r['ttft_p50'] * 1000:7.0f} ms",
                flush=True,
            )
    finally:
        engine.close()
        del engine
        gc.collect()
        if args.device == "cuda":
            import torch

            torch.cuda.empty_cache()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: 32 on CPU, 128 on GPU")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="runs per persona count (the median is shown)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.max_new_tokens is None:
        args.max_new_tokens = 128 if args.device == "cuda" else 32
    with tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp:
        print(f"building the base and {max(PERSONA_COUNTS)} adapters ({args.device})…", flush=True)
        home, personas = build_home(Path(tmp), args.device, args.rank, max(PERSONA_COUNTS))
        gc.collect()
        if args.device == "cuda":
            import torch

            torch.cuda.empty_cache()
        peft = run_engine("peft", home, personas, args)
        vllm = run_engine("vllm", home, personas, args)
    print()
    print(f"{REQUESTS} concurrent requests, {args.max_new_tokens} tokens each, greedy, {args.device}")
    header = "personas | peft tok/s | vllm tok/s | tok/s vllm÷peft | peft TTFT | vllm TTFT | TTFT peft÷vllm"
    print(header)
    print("-" * len(header))
    rows = []
    for count in PERSONA_COUNTS:
        p, v = peft[count], vllm[count]
        row = {
            "personas": count,
            "peft": p,
            "vllm": v,
            "tokens_per_s_ratio": v["tokens_per_s"] / p["tokens_per_s"],
            "ttft_ratio": p["ttft_p50"] / v["ttft_p50"],
        }
        rows.append(row)
        print(
            f"{count:>8} | {p['tokens_per_s']:10.1f} | {v['tokens_per_s']:10.1f} | "
            f"{row['tokens_per_s_ratio']:15.2f} | {p['ttft_p50'] * 1000:6.0f} ms | "
            f"{v['ttft_p50'] * 1000:6.0f} ms | {row['ttft_ratio']:14.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "rows": rows}, indent=2), encoding="utf-8")


if __name__ == "__main__":  # vLLM starts its engine core with "spawn": the guard is required
    main()
