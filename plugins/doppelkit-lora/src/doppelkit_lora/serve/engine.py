"""The serving engine: one base model per process, many persona adapters, batched replies.

Design:

* **One base, loaded once**, on the first request, from the base named in that persona's
  adapter manifest (``base_model`` + ``model_revision``; for the tiny model its cache key). A
  persona trained on another base is refused with a clear message rather than silently served
  by the wrong model.
* **Adapters on demand, LRU**: a persona's current version is attached to the base as a PEFT
  adapter named ``<team>__<user>__<version>`` on first use; at most ``engine.max_resident`` stay
  attached, the least recently used is deleted first. Base weights are never merged or touched.
* **Each persona's own formatter**: the prompt is built by the formatter named in the adapter's
  manifest, from the run's registries (:class:`doppelkit.serving.PersonaFormatters`).
* **Always fresh**: before every batch each persona's ``CURRENT`` pointer and manifest are read
  (cheap: two small files and a stat). A different version, creation time or weights file means
  a retrain: the new version is attached and the old one deleted, so no reply started after a
  publish is served by the previous adapter.
* **One worker thread owns the model**. Callers (Slack handlers, the terminal) put requests in a
  queue; the worker takes every request waiting (up to ``max_batch``, at most ``max_resident``
  personas) and decodes them in one batch, each row with its own adapter (PEFT
  ``adapter_names``). Each row streams its text as it is generated.
* **Safety**: adapters are read from ``adapter_model.safetensors`` under home only
  (:mod:`doppelkit_lora.serve.adapter_files`); ``HF_HUB_OFFLINE=1`` is set when the engine is built;
  team and user IDs are validated before any path is built from them.
"""

from __future__ import annotations

import atexit
import queue
import secrets
import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from doppelkit import artifacts
from doppelkit.errors import PersonaError, UserError
from doppelkit.interfaces import Formatter, RunContext
from doppelkit.models import AdapterManifest, Persona, Thread, validate_safe_id
from doppelkit.reply_text import ReplyCutter
from doppelkit.serving import (
    GenerationConfig,
    PersonaFormatters,
    ReplyText,
    as_trained,
    base_mismatch_message,
    decoder,
    persona_conversation,
    prompt_ids,
    reply_cutter,
    serve_offline,
    split_messages,
    stop_token_ids,
)
from doppelkit_lora.decoding.loop import Row, Sampling, decode
from doppelkit_lora.serve.adapter_files import AdapterIdentity, checked_files, read_adapter


class PeftEngineConfig(GenerationConfig):
    """``engine.*`` for ``engine=peft``: generation settings plus how many personas stay loaded."""

    max_resident: int = Field(4, ge=1, description="persona adapters kept attached at once (LRU)")
    max_batch: int = Field(8, ge=1, description="replies decoded together in one batch")
    ignore_eos: bool = Field(
        False, description="benchmarks only: every reply runs to max_new_tokens (equal work to compare)"
    )


class EngineClosedError(RuntimeError):
    """The engine was closed while a request was waiting."""


@dataclass
class EngineStats:
    """Counters the tests and the benchmark read (written by the worker thread only)."""

    base_loads: int = 0
    adapter_loads: int = 0
    evictions: int = 0
    batches: int = 0
    mixed_batches: int = 0  # batches with rows for more than one persona
    largest_batch: int = 0
    generated_tokens: int = 0
    base_load_seconds: float = 0.0
    adapter_load_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=100))  # latest


@dataclass(frozen=True)
class Resident:
    """An adapter attached to the base: which published version it is."""

    name: str
    identity: AdapterIdentity
    formatter: Formatter  # the one this version was trained with: prompts must match training
    manifest: AdapterManifest


@dataclass
class _Base:
    model: Any  # the base model, then the PeftModel wrapping it once an adapter is attached
    tokenizer: Any
    identity: tuple[str, str | None]  # (base_model, model_revision) from the manifests
    device: Any
    stop_ids: frozenset[int]
    pad_id: int
    max_positions: int | None
    loaded_for: str  # the persona whose manifest named this base (for error messages)
    wrapped: bool = False


_END = object()


class _Request:
    """One reply being generated: the caller reads its chunks, the worker writes them."""

    def __init__(self, persona: Persona, thread: Thread, bot_user_id: str | None, seed: int) -> None:
        self.persona, self.thread, self.bot_user_id, self.seed = persona, thread, bot_user_id, seed
        self.key = (persona.team, persona.id)
        self.out: queue.Queue[Any] = queue.Queue()
        self.cancelled = threading.Event()
        self.version: str | None = None  # the adapter version that served it
        self._text = ReplyText(ReplyCutter(), lambda ids: "")
        self._formatter: Formatter | None = None
        self._finished = False

    def start(self, text: ReplyText, version: str, formatter: Formatter) -> None:
        self._text, self.version, self._formatter = text, version, formatter

    def messages(self) -> list[str]:
        """The whole reply as the persona's separate messages (split by its formatter)."""
        text = "".join(self.chunks())
        if self._formatter is None:  # never started (cancelled before its batch)
            return [text] if text.strip() else []
        return split_messages(self._formatter, text)

    def chunks(self) -> Iterator[str]:
        try:
            while True:
                item = self.out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancelled.set()  # the reader went away: stop generating for it

    # --- worker side ----------------------------------------------------------------------

    def on_token(self, token: int) -> bool:
        new, done = self._text.add([token])
        self._emit(new)
        return done or self.cancelled.is_set()

    def on_done(self) -> None:
        if not self._finished:
            self._emit(self._text.finish())
            self.finish()

    def finish(self) -> None:
        self._finished = True
        self.out.put(_END)

    def fail(self, exc: BaseException) -> None:
        if not self._finished:
            self._finished = True
            self.out.put(exc)

    def _emit(self, new: str) -> None:
        if new:
            self.out.put(new)


class PeftEngine:
    """Persona replies from one base model with LoRA adapters (``engine=peft``)."""

    name: ClassVar[str] = "peft"
    Config: ClassVar[type[PeftEngineConfig]] = PeftEngineConfig

    def __init__(self, config: PeftEngineConfig, context: RunContext) -> None:
        serve_offline()
        self.config = config
        self.context = context
        self.home = context.home
        self.model_config = context.settings.model  # dtype and trust_remote_code of the base
        self.formatters = PersonaFormatters(context)
        self.sampling = Sampling.from_config(config)
        self.stats = EngineStats()
        self._device = context.device
        self._base: _Base | None = None
        self._resident: OrderedDict[tuple[str, str], Resident] = OrderedDict()  # worker only
        self._resident_names: tuple[str, ...] = ()  # a snapshot other threads may read
        self._queue: queue.Queue[list[_Request] | None] = queue.Queue()  # None: close
        self._pending: deque[_Request] = deque()  # taken from the queue, left for a later batch
        self._start_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False

    # --- Engine protocol -----------------------------------------------------------------

    def current_version(self, team: str, user: str) -> str | None:
        published = self._published(team, user)
        return published.version if published else None

    def personas(self) -> list[AdapterManifest]:
        return artifacts.published_personas(self.home)

    def stream(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> Iterator[str]:
        """Text chunks of the reply as they are generated; closing the iterator cancels it."""
        request = self._request(persona, thread, bot_user_id)
        self._submit([request])
        return request.chunks()

    def reply(self, persona: Persona, thread: Thread, *, bot_user_id: str | None = None) -> list[str]:
        """The whole reply, split into the messages the persona would post (maybe none)."""
        request = self._request(persona, thread, bot_user_id)
        self._submit([request])
        return request.messages()

    def reply_many(self, requests: Sequence[tuple[Persona, Thread]]) -> list[list[str]]:
        """Replies to several conversations, submitted together so they share batches."""
        made = [self._request(persona, thread, None) for persona, thread in requests]
        self._submit(made)
        return [request.messages() for request in made]

    def _request(self, persona: Persona, thread: Thread, bot_user_id: str | None) -> _Request:
        if self._published(persona.team, persona.id) is None:
            raise PersonaError(
                f"{persona.label} ({persona.id}) has no trained adapter under {self.home.root}: "
                f"run `doppelkit persona.user={persona.id}` first."
            )
        seed = self.config.seed if self.config.seed is not None else secrets.randbits(62)
        return _Request(persona, thread, bot_user_id, seed)

    # --- lifecycle -----------------------------------------------------------------------

    def resident(self) -> list[str]:
        """Names of the attached adapters, least recently used first."""
        return list(self._resident_names)

    def close(self) -> None:
        """Stop the worker; requests still waiting fail with :class:`EngineClosedError`."""
        with self._start_lock:
            already, self._closed = self._closed, True
            worker = self._worker
        if worker is not None and not already:
            atexit.unregister(self.close)
            self._queue.put(None)
            worker.join(timeout=30)

    def __enter__(self) -> PeftEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _submit(self, requests: list[_Request]) -> None:
        """Queue requests as one item, so the worker sees all of them at once."""
        with self._start_lock:
            if self._closed:
                raise EngineClosedError("the engine is closed")
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="doppelkit-engine", daemon=True)
                self._worker.start()
                # Stop the worker before the interpreter tears torch down under it (which aborts
                # the process) when a caller never closes the engine.
                atexit.register(self.close)
        self._queue.put(requests)

    # --- worker --------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            self._serve(batch)
        closed = EngineClosedError("the engine was closed before this reply was generated")
        for item in [self._pending, *_drain(self._queue)]:
            for request in item or []:
                request.fail(closed)

    def _next_batch(self) -> list[_Request] | None:
        """The oldest request plus every waiting one that fits (``max_batch``, ``max_resident``)."""
        if not self._pending:
            item = self._queue.get()
            if item is None:
                return None
            self._pending.extend(item)
        stop = False
        for item in _drain(self._queue):
            if item is None:
                stop = True
            else:
                self._pending.extend(item)
        waiting = list(self._pending)
        self._pending.clear()
        batch: list[_Request] = []
        personas: set[tuple[str, str]] = set()
        for request in waiting:
            fits = request.key in personas or len(personas) < self.config.max_resident
            if len(batch) < self.config.max_batch and fits:
                batch.append(request)
                personas.add(request.key)
            else:
                self._pending.append(request)
        if stop:
            self._queue.put(None)  # honour the close after this batch
        return batch

    def _serve(self, batch: list[_Request]) -> None:
        rows: list[Row] = []
        served: list[_Request] = []
        names: dict[tuple[str, str], str] = {}  # one version per persona within a batch
        for request in batch:
            if request.cancelled.is_set():
                request.finish()
                continue
            try:
                name = names.get(request.key) or self._attach_current(request.persona, set(names.values()))
                names[request.key] = name
                rows.append(self._row(request, name))
                served.append(request)
            except Exception as exc:  # this request's problem (persona gone, bad adapter): only it fails
                request.fail(exc)
        if not rows:
            return
        base = self._base
        assert base is not None
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(rows))
        if len({row.adapter for row in rows}) > 1:
            self.stats.mixed_batches += 1
        try:
            decode(
                base.model,
                rows,
                pad_id=base.pad_id,
                stop_ids=base.stop_ids,
                device=base.device,
                max_positions=base.max_positions,
            )
        except Exception as exc:
            for request in served:
                request.fail(exc)
        self._evict(pinned=set())

    def _row(self, request: _Request, adapter: str) -> Row:
        base = self._base
        assert base is not None
        resident = self._resident[request.key]
        persona, formatter = request.persona, resident.formatter
        thread = as_trained(request.thread, resident.manifest)
        messages = persona_conversation(formatter, thread, persona, request.bot_user_id)
        ids = prompt_ids(formatter, messages, base.tokenizer)
        cutter = reply_cutter(self.config, thread, persona, request.bot_user_id)
        version = self._resident[request.key].identity.version
        request.start(ReplyText(cutter, decoder(base.tokenizer)), version, formatter)

        def on_token(token: int) -> bool:
            self.stats.generated_tokens += 1  # counted before the caller can see the reply end
            return request.on_token(token)

        return Row(ids, adapter, self.sampling, request.seed, on_token, request.on_done)

    # --- adapters ------------------------------------------------------------------------

    def _published(self, team: str, user: str) -> artifacts.PublishedAdapter | None:
        validate_safe_id(team, "team")
        validate_safe_id(user, "user")
        return artifacts.current_version(self.home, team, user)

    def _attach_current(self, persona: Persona, pinned: set[str]) -> str:
        """The adapter name serving ``persona``'s current version, attaching it if needed."""
        published = self._published(persona.team, persona.id)
        if published is None:
            raise PersonaError(f"{persona.label} ({persona.id}) has no trained adapter any more")
        files = checked_files(self.home, published)
        key = (persona.team, persona.id)
        resident = self._resident.get(key)
        if resident is not None and resident.identity == files.identity:
            self._resident.move_to_end(key)
            self._resident_names = tuple(r.name for r in self._resident.values())
            return resident.name
        base = self._ensure_base(published.manifest)
        started = time.perf_counter()
        config, weights = read_adapter(files, base.device)
        name = self._adapter_name(persona, published.version)
        self._attach(base, name, config, weights)
        self.stats.adapter_loads += 1
        self.stats.adapter_load_seconds.append(time.perf_counter() - started)
        if resident is not None:  # a retrain: the old version goes at once
            self._detach(resident.name)
        manifest = published.manifest
        self._resident[key] = Resident(name, files.identity, self.formatters.for_manifest(manifest), manifest)
        self._resident.move_to_end(key)
        self._evict(pinned | {name})
        self._resident_names = tuple(r.name for r in self._resident.values())
        return name

    def _adapter_name(self, persona: Persona, version: str) -> str:
        # PEFT keeps adapters in ModuleDicts: no dots in names. A counter keeps names unique
        # in the rare case two IDs differ only by '.' vs '_'.
        name = f"{persona.team}__{persona.id}__{version}".replace(".", "_")
        taken = {r.name for r in self._resident.values()}
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}__{n}"
        return candidate

    def _attach(self, base: _Base, name: str, config: Any, weights: dict[str, Any]) -> None:
        from peft import get_peft_model, set_peft_model_state_dict

        if not base.wrapped:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                base.model = get_peft_model(base.model, config, adapter_name=name)
            base.wrapped = True
        else:
            base.model.add_adapter(name, config)
        result = set_peft_model_state_dict(base.model, weights, adapter_name=name)
        unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if unexpected:
            self._detach(name)
            raise UserError(
                f"adapter {name} does not fit the base model ({len(unexpected)} unexpected weights, e.g. "
                f"{unexpected[0]}); was it trained on another base?"
            )
        base.model.eval()

    def _detach(self, name: str) -> None:
        base = self._base
        assert base is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "adapter X was active, which is now deleted"
            base.model.delete_adapter(name)

    def _evict(self, pinned: set[str]) -> None:
        while len(self._resident) > self.config.max_resident:
            victim = next((k for k, r in self._resident.items() if r.name not in pinned), None)
            if victim is None:
                return
            self._detach(self._resident.pop(victim).name)
            self.stats.evictions += 1
        self._resident_names = tuple(r.name for r in self._resident.values())

    # --- the base model ------------------------------------------------------------------

    def _ensure_base(self, manifest: AdapterManifest) -> _Base:
        wanted = (manifest.base_model, manifest.model_revision)
        if self._base is not None:
            if self._base.identity != wanted:
                raise UserError(base_mismatch_message(manifest, self._base.identity, self._base.loaded_for))
            return self._base
        import torch
        from transformers.utils import logging as hf_logging

        from doppelkit_lora.model.loading import load_pretrained

        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        location, revision = artifacts.base_location(self.context.hook, self.home, manifest)
        model_config = self.model_config.model_copy(
            update={"name": manifest.base_model, "revision": revision}
        )
        started = time.perf_counter()
        hf_logging.disable_progress_bar()  # a serving log is no place for download/load bars
        model, tokenizer, _dtype = load_pretrained(location, model_config, device, revision)
        model.eval()
        self.stats.base_loads += 1
        self.stats.base_load_seconds = time.perf_counter() - started
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._base = _Base(
            model=model,
            tokenizer=tokenizer,
            identity=wanted,
            device=torch.device(device),
            stop_ids=frozenset() if self.config.ignore_eos else stop_token_ids(tokenizer),
            pad_id=int(pad or 0),
            max_positions=getattr(model.config, "max_position_embeddings", None),
            loaded_for=f"{manifest.persona_name} ({manifest.persona_id})",
        )
        return self._base


def _drain(source: queue.Queue[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(source.get_nowait())
        except queue.Empty:
            return items
