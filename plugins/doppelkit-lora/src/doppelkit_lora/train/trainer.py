"""The ``lora`` trainer: LoRA fine-tuning with peft + transformers, evaluated and published.

One ``train(job)`` call: read the dataset → load the base model (building the tiny one if
asked) → render through the persona's formatter → pack → train (resumable, early-stopped on
held-out loss) → persona report → publish a new adapter version atomically → optionally delete
the dataset. Heavy libraries are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

import doppelkit
from doppelkit import artifacts
from doppelkit.errors import InputDataError
from doppelkit.faults import crash_point
from doppelkit.interfaces import RunContext, TrainJob, TrainResult
from doppelkit.models import AdapterManifest, Example
from doppelkit_lora.decoding.generation import generate_reply, served_cutter
from doppelkit_lora.model.loading import LoadedBase, load_base
from doppelkit_lora.model.progress import progress_bar
from doppelkit_lora.model.tiny import TinyModelConfig
from doppelkit_lora.train.base_corpus import tiny_corpus
from doppelkit_lora.train.checkpoints import Checkpoints, TrainState, load_trainable_state, trainable_state
from doppelkit_lora.train.data import dataset_fingerprint, read_examples, render_examples
from doppelkit_lora.train.evaluation import (
    MEMORISED_CHARS,
    MemorisationIndex,
    eval_loss,
    perplexity,
    print_persona_report,
    print_samples,
    style_stats,
)
from doppelkit_lora.train.objective import loss_sum
from doppelkit_lora.train.packing import PackedRow, batches, collate, pack

# Knobs that do not change what is learned: a checkpoint made under other values still resumes.
RUN_NEUTRAL_KEYS = (
    "resume",
    "checkpoint_every",
    "delete_dataset_after",
    "report_samples",
    "report_max_new_tokens",
    "report_temperature",
)


class LoraConfig(BaseModel):
    """``trainer.*`` for ``trainer=lora``."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    # "all-linear" = every linear layer of the transformer blocks (PEFT's shorthand), or a list
    # of module names such as [q_proj, v_proj].
    target_modules: list[str] | str = "all-linear"
    learning_rate: float = Field(1e-3, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup: int = Field(10, ge=0)  # steps of linear warm-up
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)  # packed rows of max_seq_len tokens per micro-batch
    grad_accum: int = Field(1, ge=1)
    max_steps: int | None = Field(200, ge=1)  # optimizer steps; with epochs, whichever is first
    epochs: float | None = Field(2, gt=0)
    max_seq_len: int = Field(512, ge=16)  # row length; longer examples lose their oldest context
    seed: int = 0
    gradient_checkpointing: bool = False  # trade compute for memory on big models
    # Evaluation and early stopping on held-out loss (the seed overfitted past ~200 steps).
    eval_every: int = Field(20, ge=0)  # steps; 0 = only at the end
    early_stopping_patience: int = Field(3, ge=0)  # evals without improvement; 0 = never stop early
    early_stopping_min_delta: float = Field(0.0, ge=0)
    # Resume: checkpoints under home/state/checkpoints, removed after a successful publish.
    resume: bool = True
    checkpoint_every: int = Field(50, ge=0)  # steps; 0 = no checkpoints
    # Data retention: delete the dataset after a successful publish. null = on for API scrapes
    # (dataset report source == "slack"), off otherwise. Never after a failure.
    delete_dataset_after: bool | None = None
    # Persona report: sampled replies (kept few and short: this runs on CPU in the demo).
    report_samples: int = Field(6, ge=0)
    report_max_new_tokens: int = Field(48, ge=1)
    report_temperature: float = Field(0.7, ge=0)
    # The base model's loading, and the tiny model's shape (model=tiny), are training choices.
    load_in_4bit: bool = False  # QLoRA: a 4-bit base; needs bitsandbytes and a CUDA GPU
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig)

    @model_validator(mode="after")
    def _some_stopping_rule(self) -> LoraConfig:
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set trainer.max_steps or trainer.epochs (or both: whichever comes first)")
        return self


@dataclass
class Prepared:
    """The tokenised, packed data of a run."""

    train_rows: list[PackedRow]
    eval_rows: list[PackedRow]
    report_examples: list[Example]  # conversations to sample replies for
    eval_split: str  # "held-out" or "train" (no held-out threads)
    render_stats: dict[str, int]


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class LoraTrainer:
    name: ClassVar[str] = "lora"
    Config: ClassVar[type[LoraConfig]] = LoraConfig

    def __init__(self, config: LoraConfig, context: RunContext) -> None:
        self.config = config
        self.context = context

    # --- the job ---------------------------------------------------------------------------

    def train(self, job: TrainJob) -> TrainResult:
        import torch

        cfg, console, home = self.config, self.context.console, self.context.home
        device = self.device()
        train_examples = read_examples(job.dataset)
        if not train_examples:
            raise InputDataError(f"the dataset {job.dataset} has no examples; run `doppelkit ingest` again")
        eval_examples = read_examples(job.eval_dataset)
        base = load_base(
            job.model,
            home=home,
            device=device,
            corpus=lambda: tiny_corpus(job, train_examples),
            console=console,
            tiny_config=cfg.tiny,
            load_in_4bit=cfg.load_in_4bit,
        )
        data = self._prepare(job, base, train_examples, eval_examples)
        torch.manual_seed(cfg.seed)
        model = self._attach_lora(base.model)
        dataset_hash = (job.report.dataset_sha256 if job.report else "") or dataset_fingerprint(
            train_examples
        )
        template_hash = _hash(
            job.formatter.name,
            _formatter_config(job.formatter),
            getattr(base.tokenizer, "chat_template", None),
        )
        run_key = _hash(
            dataset_hash,
            dataset_fingerprint(eval_examples),
            base.name,
            base.revision,
            template_hash,
            {k: v for k, v in cfg.model_dump().items() if k not in RUN_NEUTRAL_KEYS},
        )[:24]
        checkpoints = Checkpoints(home, job.persona.team, job.persona.id, run_key)
        state = self._fit(model, base, data, checkpoints, device)

        metrics = self._persona_report(job, model, base, data, train_examples, state, device)
        crash_point("train:before_publish")
        manifest = AdapterManifest(
            version="v0",  # replaced by publish() with the version it claims
            team=job.persona.team,
            persona_id=job.persona.id,
            persona_name=job.persona.label,
            persona_user=job.persona.user,
            base_model=base.name,
            model_revision=base.revision,
            trainer=self.name,
            trainer_config=cfg.model_dump(mode="json"),
            formatter=job.formatter.name,
            formatter_config=_formatter_config(job.formatter),
            template_hash=template_hash,
            dataset_hash=dataset_hash,
            platform=job.report.platform if job.report else None,
            metrics=metrics,
            doppelkit_version=doppelkit.__version__,
        )
        published = artifacts.publish(
            home,
            job.persona.team,
            job.persona.id,
            lambda directory: model.save_pretrained(directory, safe_serialization=True),
            manifest,
        )
        checkpoints.clear()  # the run is complete: nothing left to resume
        self._retain_or_delete(job)
        return TrainResult(adapter_dir=published.path, version=published.version, metrics=metrics)

    def device(self) -> str:
        """The backend's device (``RunContext.device``), else CUDA when present, else CPU."""
        chosen = getattr(self.context, "device", None)
        if chosen:
            return str(chosen)
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    # --- steps -----------------------------------------------------------------------------

    def _prepare(
        self, job: TrainJob, base: LoadedBase, train_examples: list[Example], eval_examples: list[Example]
    ) -> Prepared:
        cfg = self.config
        train_items, train_stats = render_examples(
            train_examples, job.formatter, base.tokenizer, cfg.max_seq_len
        )
        if not train_items:
            raise InputDataError(
                f"none of the {len(train_examples)} examples has a trainable response within "
                f"trainer.max_seq_len={cfg.max_seq_len} tokens; raise it"
            )
        eval_items, _ = render_examples(eval_examples, job.formatter, base.tokenizer, cfg.max_seq_len)
        split = "held-out" if eval_items else "train"
        report_pool = eval_examples if eval_items else train_examples
        # Every k-th conversation: spread over the data, the same ones on every run.
        k = max(1, len(report_pool) // max(1, cfg.report_samples))
        return Prepared(
            train_rows=pack(train_items, cfg.max_seq_len),
            eval_rows=pack(eval_items, cfg.max_seq_len),
            report_examples=report_pool[::k][: cfg.report_samples],
            eval_split=split,
            render_stats={
                "examples": train_stats.examples,
                "truncated": train_stats.truncated,
                "dropped": train_stats.dropped,
                "eval_examples": len(eval_items),
            },
        )

    def _attach_lora(self, model: Any) -> Any:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model, prepare_model_for_kbit_training

        cfg = self.config
        if getattr(model, "is_loaded_in_4bit", False):
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=cfg.gradient_checkpointing
            )
        elif cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        peft_config = PeftLoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,  # type: ignore[arg-type]  # PEFT annotates int; a float scales as well
            lora_dropout=cfg.dropout,
            target_modules=cfg.target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        )
        with warnings.catch_warnings():
            # peft still calls transformers' deprecated is_gradient_checkpointing alias
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, peft_config)

    def total_steps(self, rows: int) -> int:
        cfg = self.config
        per_epoch = max(1, math.ceil(math.ceil(rows / cfg.batch_size) / cfg.grad_accum))
        candidates = [cfg.max_steps] if cfg.max_steps is not None else []
        if cfg.epochs is not None:
            candidates.append(max(1, math.ceil(cfg.epochs * per_epoch)))
        return min(candidates)

    def _micro_batches(self, rows: list[PackedRow], micro_index: int) -> list[PackedRow]:
        """The rows of global micro-batch ``micro_index``: a fresh seeded shuffle every epoch,
        computed (not stored), so a resumed run continues with exactly the next batch."""
        import torch

        per_epoch = math.ceil(len(rows) / self.config.batch_size)
        epoch, position = divmod(micro_index, per_epoch)
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        order = torch.randperm(len(rows), generator=generator).tolist()
        return batches(rows, self.config.batch_size, order)[position]

    def _fit(
        self, model: Any, base: LoadedBase, data: Prepared, checkpoints: Checkpoints, device: str
    ) -> TrainState:
        import torch

        cfg, console = self.config, self.context.console
        pad_id = base.tokenizer.pad_token_id
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        total = self.total_steps(len(data.train_rows))
        state, best = TrainState(), None
        if cfg.resume and (resumed := checkpoints.load(model, optimizer)) is not None:
            state, best = resumed.state, resumed.best_weights
            state.resumed_from = state.step
            console.print(f"resuming from the checkpoint at step {state.step} ({checkpoints.root})")
        if state.base_eval_loss is None:
            with model.disable_adapter():
                state.base_eval_loss = eval_loss(model, data.eval_rows, cfg.batch_size, pad_id, device)

        def evaluate() -> bool:
            """Record an eval point; True when early stopping says stop."""
            nonlocal best
            loss = eval_loss(model, data.eval_rows, cfg.batch_size, pad_id, device)
            if loss is None:
                return False
            state.history.append({"step": state.step, "eval_loss": round(loss, 5)})
            if state.best_eval_loss is None or loss < state.best_eval_loss - cfg.early_stopping_min_delta:
                state.best_eval_loss, state.best_step, state.evals_since_best = loss, state.step, 0
                best = trainable_state(model)
            else:
                state.evals_since_best += 1
            return bool(cfg.early_stopping_patience) and state.evals_since_best >= cfg.early_stopping_patience

        model.train()
        stopped_early = False
        progress = progress_bar(console, f"fine-tuning LoRA r={cfg.rank}")
        with progress:
            task = progress.add_task(
                "train", total=total, completed=state.step, loss=state.last_loss or float("nan"), extra=""
            )
            while state.step < total and not stopped_early:
                started = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = cfg.learning_rate * lr_factor(
                        state.step, total, cfg.warmup, cfg.lr_scheduler
                    )
                micro = [
                    collate(self._micro_batches(data.train_rows, state.step * cfg.grad_accum + a), pad_id)
                    for a in range(cfg.grad_accum)
                ]
                # Normalise by the step's target tokens so grad_accum matches one big batch.
                n_targets = sum(int((b["targets"] != -100).sum()) for b in micro)
                step_loss = 0.0
                for batch in micro:
                    loss, _ = loss_sum(model, {k: v.to(device) for k, v in batch.items()})
                    (loss / n_targets).backward()
                    step_loss += float(loss.detach())
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.tokens += n_targets
                state.seconds += time.perf_counter() - started
                state.last_loss = step_loss / n_targets
                crash_point(f"train:step:{state.step}")
                if cfg.eval_every and state.step % cfg.eval_every == 0 and state.step < total:
                    stopped_early = evaluate()
                    model.train()
                extra = f"eval {state.history[-1]['eval_loss']:.3f}" if state.history else ""
                extra += f"  {state.tokens / max(state.seconds, 1e-9):,.0f} tok/s"
                progress.update(task, completed=state.step, loss=state.last_loss, extra=extra)
                if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < total:
                    checkpoints.save(model, optimizer, state, best)
        if not stopped_early:
            evaluate()
        if best is not None and state.best_step != state.step:
            load_trainable_state(model, best)  # publish the best eval point, not the last
        model.eval()
        state.stopped_early = stopped_early
        return state

    def _persona_report(
        self,
        job: TrainJob,
        model: Any,
        base: LoadedBase,
        data: Prepared,
        train_examples: list[Example],
        state: TrainState,
        device: str,
    ) -> dict[str, Any]:
        import torch

        cfg, console = self.config, self.context.console
        adapter_loss = state.best_eval_loss
        samples: list[dict[str, str]] = []
        generated: dict[str, list[str]] = {"base": [], "adapter": []}
        for i, example in enumerate(data.report_examples):
            prompt = example.messages[:-1]
            for which in ("base", "adapter"):
                torch.manual_seed(cfg.seed + i)
                sample = partial(
                    generate_reply,
                    model,
                    base.tokenizer,
                    job.formatter,
                    prompt,
                    max_new_tokens=cfg.report_max_new_tokens,
                    temperature=cfg.report_temperature,
                    max_prompt_tokens=cfg.max_seq_len,
                    cutter=served_cutter(prompt, job.persona.label),
                )
                if which == "base":
                    with model.disable_adapter():
                        reply = sample()
                else:
                    reply = sample()
                generated[which].append(reply)
            last = next((m.content for m in reversed(prompt) if m.role == "user"), "")
            samples.append(
                {
                    "prompt": _clip(last),
                    "adapter": _clip(generated["adapter"][-1]),
                    "real": _clip(example.response),
                }
            )
        memory = MemorisationIndex(e.response for e in train_examples)
        report: dict[str, Any] = {
            "persona": f"{job.persona.label} ({job.persona.id})",
            "eval": {
                "split": data.eval_split,
                "examples": data.render_stats["eval_examples"] if data.eval_split == "held-out" else 0,
                "base_loss": _round(state.base_eval_loss),
                "adapter_loss": _round(adapter_loss),
                "base_perplexity": _round(perplexity(state.base_eval_loss), 2),
                "adapter_perplexity": _round(perplexity(adapter_loss), 2),
                "history": state.history,
            },
            "style": {
                "real": style_stats([e.response for e in train_examples]),
                "base": style_stats(generated["base"]),
                "adapter": style_stats(generated["adapter"]),
            },
            "memorisation": {
                "threshold_chars": MEMORISED_CHARS,
                "samples": len(generated["adapter"]),
                "base_rate": memory.rate(generated["base"]),
                "adapter_rate": memory.rate(generated["adapter"]),
            },
            "train": {
                "steps": state.step,
                "best_step": state.best_step,
                "stopped_early": state.stopped_early,
                "resumed_from_step": state.resumed_from,
                "final_train_loss": _round(state.last_loss),
                "train_tokens": state.tokens,
                "tokens_per_second": _round(state.tokens / state.seconds if state.seconds else None, 1),
                "seconds": _round(state.seconds, 1),
                "rows": len(data.train_rows),
                "packing_fill": _round(
                    sum(len(r) for r in data.train_rows) / (len(data.train_rows) * cfg.max_seq_len), 3
                ),
                **{f"{k}": v for k, v in data.render_stats.items()},
                "device": device,
                "dtype": base.dtype,
                "base_model": base.name,
                "base_revision": base.revision,
            },
        }
        if data.eval_split == "train":
            console.print(
                "[yellow]no held-out threads[/]: no held-out loss and no early stopping; the "
                "sample replies below continue training conversations (set formatter.eval_fraction "
                "> 0 and ingest again for a real evaluation)"
            )
        print_persona_report(report, console)
        print_samples(samples, job.persona.label, console)
        return report

    def _retain_or_delete(self, job: TrainJob) -> None:
        """Delete the dataset after a successful publish when asked (default: API scrapes).

        The workspace corpus ingest wrote beside it goes too: it is the same scrape's text (the
        tiny base built from it stays, and the next ingest writes the corpus again).
        """
        delete = self.config.delete_dataset_after
        if delete is None:
            delete = job.report is not None and job.report.source == "slack"
        if not delete:
            return
        corpus = job.report.corpus_path if job.report is not None else ""
        for path in (job.dataset, job.eval_dataset, corpus or None):
            if path is not None:
                Path(path).unlink(missing_ok=True)
        self.context.console.print(
            f"deleted the dataset {job.dataset} after publishing (trainer.delete_dataset_after)"
        )


def _formatter_config(formatter: Any) -> dict[str, Any]:
    config = getattr(formatter, "config", None)
    return config.model_dump(mode="json") if isinstance(config, BaseModel) else {}


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
