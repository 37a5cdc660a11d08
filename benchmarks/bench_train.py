"""Training throughput: doppelkit's LoRA trainer path vs a plain HF Trainer + PEFT baseline.

    python benchmarks/bench_train.py                 # CPU: the tiny model's shape (default)
    python benchmarks/bench_train.py --device cuda   # GPU: a random Llama-3-8B-shaped model, bf16

Both sides train the same LoRA (rank 16, all linear layers) on the same model weights and the
same synthetic chat-shaped data (short replies after prompts of very mixed length, prompt
masked), once over the data, in the same invocation:

* **baseline** — what alpaca-lora (and the seed) does: ``transformers.Trainer`` with PEFT,
  ``DataCollatorForSeq2Seq`` padding every batch to its longest example;
* **doppelkit** — the trainer's own path: examples packed into fixed-length rows with
  position-id restarts (block-diagonal attention), the LM head run only on reply tokens.

Each side runs in its own subprocess so its peak memory (RSS on CPU, ``max_memory_allocated``
on GPU) is its own. Reported: real (non-pad) tokens/s, peak memory, the ratio and, on GPU, MFU
(6·N·tokens/s over the GPU's dense bf16 peak). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TINY_SHAPE = {  # TinyModelConfig defaults (the demo's base model)
    "vocab_size": 2048,
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
LLAMA3_8B_SHAPE = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "rope_theta": 500000.0,
}
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
LORA = {"rank": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
LEARNING_RATE = 2e-4


def synthetic_examples(n: int, vocab: int, max_len: int, seed: int) -> list[dict[str, list[int]]]:
    """Chat-shaped examples: log-normal prompt lengths (a line to a long thread), short replies."""
    import random

    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        reply = min(max(4, int(rng.lognormvariate(3.2, 0.6))), max_len // 4)
        prompt = min(max(8, int(rng.lognormvariate(4.6, 0.9))), max_len - reply)
        ids = [rng.randrange(5, vocab) for _ in range(prompt + reply)]
        examples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return examples


def build_model(shape: dict[str, Any], device: str, seed: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**shape, max_position_embeddings=4096, pad_token_id=0, attn_implementation="sdpa")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build the 8B model directly in bf16, on the GPU
    try:
        with torch.device(device):
            return LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)


def lora(model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=LORA["rank"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=LORA["target_modules"],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def run_baseline(model: Any, examples: list[dict[str, Any]], args: argparse.Namespace) -> float:
    """HF Trainer + PEFT, padded per batch (alpaca-lora's recipe). Returns seconds."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from doppelkit.testing.tokenizers import build_test_tokenizer

    tokenizer = build_test_tokenizer()  # only pads: its pad id is what the collator writes
    training = TrainingArguments(
        output_dir=str(Path(args.workdir) / "hf"),
        per_device_train_batch_size=args.batch_examples,
        num_train_epochs=1,
        learning_rate=LEARNING_RATE,
        warmup_steps=0,
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        bf16=args.device == "cuda",
        use_cpu=args.device == "cpu",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=args.seed,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=8, return_tensors="pt", padding=True)
    trainer = Trainer(model=model, args=training, train_dataset=examples, data_collator=collator)
    _sync(args.device)
    started = time.perf_counter()
    trainer.train()
    _sync(args.device)
    return time.perf_counter() - started


def run_doppelkit(model: Any, examples: list[dict[str, Any]], args: argparse.Namespace) -> float:
    """The lora trainer's path: pack → collate → target-only loss → AdamW. Returns seconds."""
    import torch

    from doppelkit.interfaces import Rendered
    from doppelkit_lora.train.objective import loss_sum
    from doppelkit_lora.train.packing import collate, pack

    rows = pack([Rendered(e["input_ids"], e["labels"]) for e in examples], args.seq_len)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(args.seed)).tolist()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE)
    model.train()
    _sync(args.device)
    started = time.perf_counter()
    for start in range(0, len(rows), args.batch_rows):
        batch = collate([rows[i] for i in order[start : start + args.batch_rows]], pad_id=0)
        batch = {k: v.to(args.device) for k, v in batch.items()}
        loss, n = loss_sum(model, batch)
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(args.device)
    return time.perf_counter() - started


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One side of the comparison, in this (fresh) process."""
    import torch

    shape = LLAMA3_8B_SHAPE if args.device == "cuda" else TINY_SHAPE
    examples = synthetic_examples(args.examples, shape["vocab_size"], args.seq_len, args.seed)
    model = lora(build_model(shape, args.device, args.seed))
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runner = run_baseline if args.side == "baseline" else run_doppelkit
    seconds = runner(model, examples, args)
    tokens = sum(len(e["input_ids"]) for e in examples)
    params = sum(p.numel() for p in model.parameters())
    return {
        "side": args.side,
        "seconds": round(seconds, 3),
        "tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1),
        "peak_memory_mb": round(peak_memory_mb(args.device), 1),
        "params": params,
        "mfu": mfu(params, tokens / seconds) if args.device == "cuda" else None,
    }


def mfu(params: int, tokens_per_second: float) -> float | None:
    import torch

    name = torch.cuda.get_device_name()
    peak = next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)
    return round(6 * params * tokens_per_second / peak, 4) if peak else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--examples", type=int, default=None, help="default: 384 on CPU, 512 on GPU")
    parser.add_argument("--seq-len", type=int, default=512, help="packed row length / longest example")
    parser.add_argument("--batch-examples", type=int, default=8, help="baseline: examples per batch")
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=None,
        help="doppelkit: rows per batch (default: same tokens per step as the baseline, about)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--side", choices=["baseline", "doppelkit"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("--device cuda: no CUDA GPU visible; skipping the GPU benchmark.")
            return
    args.examples = args.examples or (512 if args.device == "cuda" else 384)
    if args.batch_rows is None:
        mean_len = 150  # ≈ mean example length of synthetic_examples: keep tokens/step comparable
        args.batch_rows = max(1, round(args.batch_examples * mean_len / args.seq_len))
    if args.side:
        print(json.dumps(child(args)))
        return

    import tempfile

    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for side in ("baseline", "doppelkit"):
            cmd = [sys.executable, __file__, "--side", side, "--workdir", workdir]
            for flag in ("device", "examples", "seq_len", "batch_examples", "batch_rows", "seed"):
                cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
            done = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
            )
            if done.returncode:
                sys.exit(f"{side} failed:\n{done.stderr[-4000:]}")
            results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    base, ours = results["baseline"], results["doppelkit"]
    summary = {
        "device": args.device,
        "model": "llama3-8b-shaped (random init, bf16)"
        if args.device == "cuda"
        else "tiny (TinyModelConfig shape, fp32)",
        "examples": args.examples,
        "seq_len": args.seq_len,
        "baseline": base,
        "doppelkit": ours,
        "speedup": round(ours["tokens_per_second"] / base["tokens_per_second"], 2),
        "memory_ratio": round(ours["peak_memory_mb"] / base["peak_memory_mb"], 2),
    }
    print_table(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"LoRA training throughput — {summary['device']}, {summary['model']}")
    for column in ("", "tokens/s", "seconds", "peak memory (MB)", "MFU"):
        table.add_column(column, justify="right" if column else "left")
    for side, label in (
        ("baseline", "HF Trainer + PEFT, padded batches"),
        ("doppelkit", "doppelkit (packed)"),
    ):
        r = summary[side]
        mfu_text = "—" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        table.add_row(
            label,
            f"{r['tokens_per_second']:,.0f}",
            f"{r['seconds']:.1f}",
            f"{r['peak_memory_mb']:,.0f}",
            mfu_text,
        )
    console = Console()
    console.print(table)
    console.print(
        f"speedup (tokens/s): [bold]{summary['speedup']}×[/]   "
        f"peak memory ratio: {summary['memory_ratio']}×   ({summary['examples']} examples, "
        f"{summary['baseline']['tokens']} tokens, rows of {summary['seq_len']})"
    )


if __name__ == "__main__":
    main()
