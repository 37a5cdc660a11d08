"""The ``vllm`` engine: one base model in vLLM, every persona's published version a LoRA.

Design (see docs/engine.md):

* **One base**, started on the first request from the base named in that persona's manifest
  (located through the ``locate_base`` hook: the trainer that built it answers); a
  persona trained on another base is refused, as by the peft engine.
* **A LoRA id per published version.** Each persona's current version (told apart by
  :class:`doppelkit.artifacts.AdapterIdentity`: version, creation time, weights file) gets a
  fresh ``lora_int_id``. A retrain is therefore picked up by the next request — vLLM never serves
  a cached adapter under an id that now means other weights — and the old id is removed from
  vLLM as soon as no request uses it.
* **What every engine shares is the core's**: the prompt is built by the persona's own
  formatter (:mod:`doppelkit.serving`), tokenised here, and sent to vLLM as token IDs; the token
  IDs that come back are decoded and cut by :class:`doppelkit.serving.ReplyText` — the same stop
  tokens, stop strings, speaker cut and message splitting as ``engine=peft``. vLLM's own
  tokenizer is never started (``skip_tokenizer_init``).
* **Every row carries an adapter.** vLLM on CPU gives a row without a LoRA the adapter of
  another slot when a batch mixes both (vLLM PR #48421). Rows for the base model
  (:meth:`VllmEngine.generate_ids` with ``persona=None``) go through a zero adapter (every LoRA
  weight zero), so they get exactly the base model's output.
* **Two ways to run it** (:mod:`doppelkit_vllm.runner`): vLLM's ``AsyncLLM`` in this process
  (default), or a running vLLM OpenAI-compatible server (``engine.url``) that loads and unloads
  adapters at run time.
"""

from __future__ import annotations

import atexit
import itertools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from doppelkit import artifacts
from doppelkit.errors import PersonaError, UserError
from doppelkit.interfaces import Formatter, RunContext
from doppelkit.models import AdapterManifest, Persona, Thread, validate_safe_id
from doppelkit.serving import (
    GenerationConfig,
    PersonaFormatters,
    ReplyText,
    as_trained,
    base_mismatch_message,
    decoder,
    fit_prompt,
    persona_conversation,
    prompt_ids,
    reply_cutter,
    serve_offline,
    split_messages,
    stop_token_ids,
)
from doppelkit_vllm.runner import Adapter, Runner, Sampling


class VllmEngineConfig(GenerationConfig):
    """``engine.*`` for ``engine=vllm``: generation settings plus vLLM's multi-LoRA settings."""

    url: str | None = Field(
        None,
        description="a running vLLM OpenAI-compatible server (http://host:8000); null = vLLM in this process",
    )
    api_key: str | None = Field(None, description="the server's --api-key, if it has one (server mode)")
    request_timeout: float = Field(600, gt=0, description="seconds a server request may take (server mode)")
    max_loras: int = Field(16, ge=1, description="adapters in one batch (vLLM's GPU LoRA slots)")
    max_cpu_loras: int | None = Field(
        None, ge=1, description="adapters cached in CPU memory; null = max_loras"
    )
    max_lora_rank: int = Field(32, ge=1, description="largest adapter rank served (vLLM: 8, 16, 32, 64, …)")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="fraction of GPU memory vLLM takes (on CPU: of RAM, for the KV cache)"
    )
    kv_cache_memory_bytes: int | None = Field(
        None, ge=1, description="KV cache size in bytes; overrides gpu_memory_utilization (fits small hosts)"
    )
    max_model_len: int | None = Field(None, ge=16, description="context length; null = the model's")
    dtype: str = Field("auto", description="auto, float32, bfloat16, float16")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs the base model is split across")
    max_num_seqs: int | None = Field(
        None, ge=1, description="replies decoded together; null = vLLM's default"
    )
    enforce_eager: bool = Field(
        False, description="no CUDA graphs / torch.compile (faster start, slower decode)"
    )
    ignore_eos: bool = Field(
        False, description="benchmarks only: every reply runs to max_new_tokens (equal work to compare)"
    )


@dataclass
class EngineStats:
    """Counters the tests and the benchmark read."""

    base_loads: int = 0
    adapter_loads: int = 0  # LoRA ids registered (one per published version served)
    adapters_removed: int = 0  # ids removed from vLLM after a retrain
    requests: int = 0
    generated_tokens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


@dataclass(frozen=True)
class _Served:
    """A persona's current version as vLLM knows it."""

    identity: artifacts.AdapterIdentity
    adapter: Adapter
    formatter: Formatter
    manifest: AdapterManifest


@dataclass
class _Base:
    runner: Runner
    tokenizer: Any
    identity: tuple[str, str | None]
    loaded_for: str
    max_len: int | None
    stop_ids: frozenset[int]


class VllmEngine:
    """Persona replies from vLLM's multi-LoRA engine (``engine=vllm``)."""

    name: ClassVar[str] = "vllm"
    Config: ClassVar[type[VllmEngineConfig]] = VllmEngineConfig

    def __init__(self, config: VllmEngineConfig, context: RunContext) -> None:
        serve_offline()
        self.config = config
        self.context = context
        self.home = context.home
        self.formatters = PersonaFormatters(context)
        self.stats = EngineStats()
        self._lock = threading.RLock()
        self._base: _Base | None = None
        self._served: dict[tuple[str, str], _Served] = {}
        self._ids = itertools.count(1)
        self._in_use: Counter[int] = Counter()  # requests running per LoRA id
        self._stale: dict[int, Adapter] = {}  # replaced versions, removed once unused
        self._zero: Adapter | None = None
        self._closed = False

    # --- Engine protocol -----------------------------------------------------------------

    def current_version(self, team: str, user: str) -> str | None:
        published = self._published(team, user)
        return published.version if published else None

    def personas(self) -> list[AdapterManifest]:
        return artifacts.published_personas(self.home)

    def stream(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> Iterator[str]:
        """Text chunks of the reply as vLLM generates them; closing the iterator aborts it."""
        served, ids, text = self._prepare(persona, thread, bot_user_id)
        return self._stream(served.adapter, ids, text)

    def reply(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> list[str]:
        """The whole reply, split into the messages the persona would post (maybe none)."""
        served, ids, text = self._prepare(persona, thread, bot_user_id)
        return split_messages(served.formatter, "".join(self._stream(served.adapter, ids, text)))

    def reply_many(self, requests: Sequence[tuple[Persona, Thread]]) -> list[list[str]]:
        """Replies to several conversations, in flight together so vLLM batches them."""
        prepared = [self._prepare(persona, thread, None) for persona, thread in requests]
        streams = [(served, self._stream(served.adapter, ids, text)) for served, ids, text in prepared]
        return [split_messages(served.formatter, "".join(stream)) for served, stream in streams]

    def generate_ids(self, prompts: Sequence[tuple[Persona | None, Sequence[int]]]) -> list[list[int]]:
        """Token IDs generated for raw prompts, all in flight together (one vLLM batch).

        ``persona=None`` is the base model alone: such rows go through a zero adapter, never
        through no adapter (which vLLM on CPU would fill with another row's persona).
        """
        adapters = []
        for persona, _ids in prompts:
            if persona is None:
                adapters.append(self._zero_adapter())
            else:
                adapters.append(self._current(persona).adapter)
        base = self._base
        assert base is not None
        vocab = len(base.tokenizer)
        for _persona, ids in prompts:
            if not ids or not all(0 <= token < vocab for token in ids):
                raise ValueError(f"a prompt must be token IDs of this base (0 … {vocab - 1}), not {ids!r}")
        handles = [
            self._tokens(adapter, fit_prompt(ids, base.max_len, self.config.max_new_tokens))
            for adapter, (_persona, ids) in zip(adapters, prompts, strict=True)
        ]
        return [[token for delta in handle for token in delta] for handle in handles]

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop vLLM (in-process) or let go of the server; replies in progress fail."""
        with self._lock:
            already, self._closed = self._closed, True
            base, self._base = self._base, None
        if already:
            return
        atexit.unregister(self.close)
        if base is not None:
            base.runner.close()

    def __enter__(self) -> VllmEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------------------

    def _prepare(
        self, persona: Persona, thread: Thread, bot_user_id: str | None
    ) -> tuple[_Served, list[int], ReplyText]:
        served = self._current(persona)
        base = self._base
        assert base is not None
        thread = as_trained(thread, served.manifest)
        messages = persona_conversation(served.formatter, thread, persona, bot_user_id)
        ids = prompt_ids(served.formatter, messages, base.tokenizer)
        ids = fit_prompt(ids, base.max_len, self.config.max_new_tokens)
        cutter = reply_cutter(self.config, thread, persona, bot_user_id)
        return served, ids, ReplyText(cutter, decoder(base.tokenizer))

    def _stream(self, adapter: Adapter, ids: list[int], text: ReplyText) -> Iterator[str]:
        """Submits the request now (so requests made together share batches); the text follows."""
        return _chunks(self._tokens(adapter, ids), text)

    def _tokens(self, adapter: Adapter, ids: list[int]) -> _Request:
        base = self._base
        if base is None or self._closed:
            raise UserError("the vllm engine is closed")
        sampling = Sampling(
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            top_k=self.config.top_k,
            repetition_penalty=self.config.repetition_penalty,
            max_new_tokens=self.config.max_new_tokens,
            seed=self.config.seed,
            stop_token_ids=sorted(base.stop_ids),
            ignore_eos=self.config.ignore_eos,
        )
        with self._lock:
            self._in_use[adapter.lora_id] += 1
        self.stats.add(requests=1)
        try:
            handle = base.runner.submit(f"dk-{uuid.uuid4().hex}", ids, adapter, sampling)
        except BaseException:
            self._release(adapter)
            raise
        return _Request(self, adapter, handle)

    def _release(self, adapter: Adapter) -> None:
        with self._lock:
            self._in_use[adapter.lora_id] -= 1
            if self._in_use[adapter.lora_id] > 0 or adapter.lora_id not in self._stale:
                return
            del self._in_use[adapter.lora_id]
            self._stale.pop(adapter.lora_id)
            base = self._base
        if base is not None:
            base.runner.remove_adapter(adapter)
            self.stats.add(adapters_removed=1)

    # --- adapters ------------------------------------------------------------------------

    def _published(self, team: str, user: str) -> artifacts.PublishedAdapter | None:
        validate_safe_id(team, "team")
        validate_safe_id(user, "user")
        return artifacts.current_version(self.home, team, user)

    def _current(self, persona: Persona) -> _Served:
        """The LoRA serving ``persona``'s current version; a new id when it was retrained."""
        published = self._published(persona.team, persona.id)
        if published is None:
            raise PersonaError(
                f"{persona.label} ({persona.id}) has no trained adapter under {self.home.root}: "
                f"run `doppelkit persona.user={persona.id}` first."
            )
        files = artifacts.checked_files(self.home, published)
        key = (persona.team, persona.id)
        with self._lock:
            if self._closed:
                raise UserError("the vllm engine is closed")
            served = self._served.get(key)
            if served is not None and served.identity == files.identity:
                return served
            base = self._ensure_base(published.manifest)
            self._check_rank(files)
            lora_id = next(self._ids)
            name = f"{persona.team}__{persona.id}__{published.version}__{lora_id}"
            adapter = Adapter(name, lora_id, str(files.published.path))
            base.runner.add_adapter(adapter)
            self.stats.add(adapter_loads=1)
            formatter = self.formatters.for_manifest(published.manifest)
            self._served[key] = _Served(files.identity, adapter, formatter, published.manifest)
            if served is not None:  # a retrain: the old id goes once no request uses it
                old = served.adapter
                if self._in_use[old.lora_id] > 0:
                    self._stale[old.lora_id] = old
                else:
                    self._in_use.pop(old.lora_id, None)
                    base.runner.remove_adapter(old)
                    self.stats.add(adapters_removed=1)
            return self._served[key]

    def served_adapters(self) -> dict[tuple[str, str], Adapter]:
        """The LoRA currently serving each persona seen so far (tests, diagnostics)."""
        with self._lock:
            return {key: served.adapter for key, served in self._served.items()}

    def _check_rank(self, files: artifacts.AdapterFiles) -> None:
        try:
            rank = int(json.loads(files.config_path.read_text(encoding="utf-8")).get("r", 0))
        except (OSError, ValueError, TypeError) as exc:
            raise UserError(f"cannot read {files.config_path}: {exc}") from None
        if rank > self.config.max_lora_rank:
            raise UserError(
                f"the adapter at {files.published.path} has rank {rank}, above engine.max_lora_rank="
                f"{self.config.max_lora_rank}; set engine.max_lora_rank={_rank_slot(rank)} or more."
            )

    def _zero_adapter(self) -> Adapter:
        """An adapter whose every weight is zero: the base model, as a LoRA row (see module doc)."""
        with self._lock:
            if self._zero is not None:
                return self._zero
            like = next(iter(self._served.values()), None)
            if like is None:
                manifests = self.personas()
                if not manifests:
                    raise PersonaError("no persona is published: the base needs one adapter's shape")
                like = self._current(artifacts.manifest_persona(manifests[0]))
            path = write_zero_adapter(self.home, Path(like.adapter.path))
            base = self._base
            assert base is not None
            self._zero = Adapter("__base__", next(self._ids), str(path))
            base.runner.add_adapter(self._zero)
            return self._zero

    # --- the base model ------------------------------------------------------------------

    def _ensure_base(self, manifest: AdapterManifest) -> _Base:
        wanted = (manifest.base_model, manifest.model_revision)
        if self._base is not None:
            if self._base.identity != wanted:
                raise UserError(base_mismatch_message(manifest, self._base.identity, self._base.loaded_for))
            return self._base
        from transformers import AutoTokenizer

        from doppelkit_vllm.runner import start_runner

        location, revision = artifacts.base_location(self.context.hook, self.home, manifest)
        trust = self.context.settings.model.trust_remote_code
        try:
            tokenizer = AutoTokenizer.from_pretrained(location, revision=revision, trust_remote_code=trust)
        except OSError as exc:
            raise UserError(
                f"the tokenizer of {location} is not on this machine ({exc}); download the base once "
                "(`hf download …`) or point the persona at a local directory"
            ) from None
        runner = start_runner(self.config, location, revision, trust, self.context.settings.model.dtype)
        max_len = runner.max_model_len()
        self.stats.add(base_loads=1)
        self._base = _Base(
            runner=runner,
            tokenizer=tokenizer,
            identity=wanted,
            loaded_for=f"{manifest.persona_name} ({manifest.persona_id})",
            max_len=max_len,
            stop_ids=frozenset() if self.config.ignore_eos else stop_token_ids(tokenizer),
        )
        atexit.register(self.close)  # stop vLLM's processes before the interpreter tears down
        return self._base


def _rank_slot(rank: int) -> int:
    """The smallest rank vLLM accepts for ``max_lora_rank`` that holds ``rank``."""
    return next((slot for slot in (8, 16, 32, 64, 128, 256, 320, 512) if slot >= rank), rank)


class _Request:
    """Token IDs of one request as they arrive; its adapter counts as in use until it ends."""

    def __init__(self, engine: VllmEngine, adapter: Adapter, handle: Iterator[list[int]]) -> None:
        self._engine, self._adapter, self._handle = engine, adapter, handle
        self._closed = False

    def __iter__(self) -> _Request:
        return self

    def __next__(self) -> list[int]:
        try:
            delta = next(self._handle)
        except BaseException:
            self.close()
            raise
        self._engine.stats.add(generated_tokens=len(delta))
        return delta

    def close(self) -> None:
        """Abort the request if it is still running (idempotent)."""
        if self._closed:
            return
        self._closed = True
        close = getattr(self._handle, "close", None)
        if close is not None:
            close()
        self._engine._release(self._adapter)

    def __del__(self) -> None:
        self.close()


def _chunks(request: _Request, text: ReplyText) -> Iterator[str]:
    try:
        for delta in request:
            new, done = text.add(delta)
            if new:
                yield new
            if done:
                return
        rest = text.finish()
        if rest:
            yield rest
    finally:
        request.close()  # a cut (or a caller who stopped reading) aborts the request in vLLM


def write_zero_adapter(home: Any, like: Path) -> Path:
    """A copy of the adapter at ``like`` with every weight zero, under ``home/cache/vllm``.

    Same config (target modules, rank) as a real persona's, so vLLM accepts it next to them; its
    output is the base model's. Written once per shape (named by the config's hash).
    """
    import hashlib

    from safetensors.torch import load_file, save_file

    from doppelkit.home import atomic_dir

    config = (like / artifacts.ADAPTER_CONFIG).read_bytes()
    weights = load_file(str(like / artifacts.ADAPTER_WEIGHTS))
    shapes = json.dumps(sorted((k, list(v.shape)) for k, v in weights.items())).encode()
    key = hashlib.sha256(config + shapes).hexdigest()[:16]
    target = home.cache / "vllm" / "zero-adapters" / key
    if (target / artifacts.ADAPTER_WEIGHTS).is_file():
        return Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_dir(target, prefix=f".staging-{key}-") as staging:
            (staging / artifacts.ADAPTER_CONFIG).write_bytes(config)
            save_file(
                {k: v.new_zeros(v.shape) for k, v in weights.items()},
                str(staging / artifacts.ADAPTER_WEIGHTS),
            )
    except FileExistsError:  # another engine wrote it first: same content
        pass
    return Path(target)
