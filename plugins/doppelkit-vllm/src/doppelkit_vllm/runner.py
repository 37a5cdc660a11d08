"""Where the vLLM engine's tokens come from: vLLM in this process, or a vLLM server.

Both take a prompt as token IDs and a LoRA, and give back the generated token IDs as they
come (an iterator of deltas; ``close()`` aborts the request). Everything else — prompts, stop
handling, reply text — is the engine's, so the two modes reply identically.

* :class:`InProcessRunner`: vLLM's ``AsyncLLM`` (continuous batching, paged attention,
  multi-LoRA) driven from an event loop on a thread of its own; callers on any thread submit
  requests, each reads its own queue. vLLM starts its engine core in a separate process
  ("spawn"): a script that builds an engine needs an ``if __name__ == "__main__":`` guard.
* :class:`ServerRunner`: a running ``vllm serve <base> --enable-lora`` started with
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; adapters are loaded with ``/v1/load_lora_adapter``
  (the server reads them from the same path, so it must see this machine's ``home``) and
  replies streamed from ``/v1/completions`` with ``return_token_ids``. Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from doppelkit.errors import UserError

if TYPE_CHECKING:
    from doppelkit_vllm.engine import VllmEngineConfig


@dataclass(frozen=True)
class Adapter:
    """One published adapter version as vLLM sees it: a name and an id unique to that version."""

    name: str
    lora_id: int
    path: str


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    max_new_tokens: int
    seed: int | None
    stop_token_ids: list[int]
    ignore_eos: bool


class Runner(Protocol):
    def submit(
        self, request_id: str, ids: list[int], adapter: Adapter, sampling: Sampling
    ) -> Iterator[list[int]]:
        """Start generating now; the iterator yields new token IDs, ``close()`` aborts."""
        ...

    def add_adapter(self, adapter: Adapter) -> None: ...

    def remove_adapter(self, adapter: Adapter) -> None: ...

    def max_model_len(self) -> int | None: ...

    def close(self) -> None: ...


_END = object()


class _Handle:
    """The caller's side of one request: a queue the producer fills, and a way to abort it."""

    def __init__(self) -> None:
        self.out: queue.Queue[Any] = queue.Queue()
        self.abort: Callable[[], object] = lambda: None
        self._done = False

    def __iter__(self) -> _Handle:
        return self

    def __next__(self) -> list[int]:
        if self._done:
            raise StopIteration
        item = self.out.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        delta: list[int] = item
        return delta

    def close(self) -> None:
        if not self._done:
            self._done = True
            self.abort()


def start_runner(
    config: VllmEngineConfig, location: str, revision: str | None, trust: bool, model_dtype: str = "auto"
) -> Runner:
    if config.url:
        return ServerRunner(config)
    return InProcessRunner(config, location, revision, trust, model_dtype)


def resolve_dtype(engine_dtype: str, model_dtype: str) -> str:
    """``engine.dtype``, else the run's ``model.dtype``, else as the peft engine: fp32 on a CPU
    (vLLM's own "auto" would take the checkpoint's dtype, or bf16 for fp32 weights), and the
    checkpoint's dtype on a GPU."""
    if engine_dtype != "auto":
        return engine_dtype
    if model_dtype != "auto":
        return model_dtype
    import torch

    return "auto" if torch.cuda.is_available() else "float32"


def quiet_vllm_logs() -> None:
    """vLLM logs INFO lines to stdout, where the terminal chat prints replies: warnings only,
    on stderr, unless the environment says otherwise. Set before vLLM is imported (its
    processes inherit it)."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def check_cpu_head_size(location: str, revision: str | None, trust: bool) -> None:
    """On a CPU, vLLM's attention takes only some head sizes, and a base with another one kills
    its engine process at the first request: say so up front, with what to do instead."""
    try:
        from vllm.platforms import current_platform
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    except ImportError:  # another vLLM layout: vLLM's own error will have to do
        return
    if not current_platform.is_cpu():
        return
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(location, revision=revision, trust_remote_code=trust)
    heads = getattr(config, "num_attention_heads", None)
    head_size = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else None)
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head_size is not None and head_size not in supported:
        raise UserError(
            f"the base model's attention heads are {head_size} wide, and vLLM on a CPU supports only "
            f"{', '.join(map(str, supported))}: serve this persona with engine=peft, or run vLLM on a "
            "GPU (a tiny base gets wider heads from a larger trainer.tiny.hidden_size per "
            "trainer.tiny.num_attention_heads)"
        )


class InProcessRunner:
    """vLLM's ``AsyncLLM`` on an event loop thread of its own."""

    def __init__(
        self, config: VllmEngineConfig, location: str, revision: str | None, trust: bool, model_dtype: str
    ) -> None:
        quiet_vllm_logs()
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise UserError(
                f"engine=vllm runs vLLM in this process, but vLLM cannot be imported ({exc}). Install it "
                '(pip install "doppelkit[vllm]" on a GPU machine; on a CPU see plugins/doppelkit-vllm/'
                "README.md), or point engine.url at a running vLLM server."
            ) from None
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # never fork a process with threads
        check_cpu_head_size(location, revision, trust)
        args = AsyncEngineArgs(
            model=location,
            revision=revision,
            trust_remote_code=trust,
            skip_tokenizer_init=True,  # prompts arrive as token IDs, replies leave as token IDs
            enable_lora=True,
            max_loras=config.max_loras,
            max_cpu_loras=config.max_cpu_loras,
            max_lora_rank=config.max_lora_rank,
            gpu_memory_utilization=config.gpu_memory_utilization,
            kv_cache_memory_bytes=config.kv_cache_memory_bytes,
            max_model_len=config.max_model_len,
            dtype=resolve_dtype(config.dtype, model_dtype),
            tensor_parallel_size=config.tensor_parallel_size,
            max_num_seqs=config.max_num_seqs,
            enforce_eager=config.enforce_eager,
            disable_log_stats=True,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="doppelkit-vllm", daemon=True)
        self.thread.start()

        async def build() -> Any:
            return AsyncLLM.from_engine_args(args)

        try:
            self.llm = self._call(build())
        except BaseException:
            self._stop_loop()
            raise
        self._closed = False
        self._live: set[_Handle] = set()  # requests not finished yet: failed by close()
        self._live_lock = threading.Lock()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def max_model_len(self) -> int | None:
        return int(self.llm.model_config.max_model_len)

    def add_adapter(self, adapter: Adapter) -> None:
        self._call(self.llm.add_lora(_lora_request(adapter)))

    def remove_adapter(self, adapter: Adapter) -> None:
        if self._closed:
            return
        if threading.current_thread() is self.thread:  # e.g. a request collected on the loop
            self.loop.create_task(self.llm.remove_lora(adapter.lora_id))
            return
        self._call(self.llm.remove_lora(adapter.lora_id))

    def submit(self, request_id: str, ids: list[int], adapter: Adapter, sampling: Sampling) -> _Handle:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            repetition_penalty=sampling.repetition_penalty,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
            stop_token_ids=sampling.stop_token_ids,
            ignore_eos=sampling.ignore_eos,
            detokenize=False,
            output_kind=RequestOutputKind.DELTA,
        )
        handle = _Handle()
        prompt = TokensPrompt(prompt_token_ids=ids)
        lora = _lora_request(adapter)
        with self._live_lock:
            if self._closed:
                raise UserError("the vllm engine is closed")
            self._live.add(handle)

        async def pump() -> None:
            try:
                async for output in self.llm.generate(prompt, params, request_id, lora_request=lora):
                    delta = list(output.outputs[0].token_ids)
                    if delta:
                        handle.out.put(delta)
                    if output.finished:
                        break
                handle.out.put(_END)
            except asyncio.CancelledError:  # aborted by the caller: vLLM drops the request
                handle.out.put(_END)
                raise
            except Exception as exc:
                handle.out.put(exc)
            finally:
                with self._live_lock:
                    self._live.discard(handle)

        future = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        handle.abort = lambda: self.loop.call_soon_threadsafe(future.cancel)
        return handle

    def close(self) -> None:
        with self._live_lock:
            if self._closed:
                return
            self._closed = True
            live, self._live = self._live, set()
        for handle in live:  # their callers would wait for ever on a stopped loop
            handle.out.put(UserError("the vllm engine was closed before this reply was finished"))
        with contextlib.suppress(Exception):
            self.llm.shutdown()
        self.llm = None  # shut down now, not again from AsyncLLM.__del__ at interpreter exit
        self._stop_loop()

    def _stop_loop(self) -> None:
        async def cancel_tasks() -> None:  # vLLM's output task would be "destroyed but pending"
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_tasks(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


def _lora_request(adapter: Adapter) -> Any:
    from vllm.lora.request import LoRARequest

    return LoRARequest(adapter.name, adapter.lora_id, adapter.path)


class ServerRunner:
    """A running vLLM OpenAI-compatible server that loads adapters at run time."""

    def __init__(self, config: VllmEngineConfig) -> None:
        assert config.url
        self.url = config.url.rstrip("/")
        self.timeout = config.request_timeout
        self.headers = {"Content-Type": "application/json"}
        if config.api_key:
            self.headers["Authorization"] = f"Bearer {config.api_key}"
        models = self._json("GET", "/v1/models")
        data = models.get("data") or [{}]
        self._max_len = data[0].get("max_model_len")

    def _open(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers=self.headers,
            method=method,
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise UserError(
                f"the vLLM server at {self.url} answered {path} with {exc.code}: {detail}"
            ) from None
        except OSError as exc:
            raise UserError(f"cannot reach the vLLM server at {self.url} (engine.url): {exc}") from None

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        with self._open(method, path, body) as response:
            text = response.read().decode("utf-8")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def max_model_len(self) -> int | None:
        return int(self._max_len) if self._max_len else None

    def add_adapter(self, adapter: Adapter) -> None:
        self._json("POST", "/v1/load_lora_adapter", {"lora_name": adapter.name, "lora_path": adapter.path})

    def remove_adapter(self, adapter: Adapter) -> None:
        self._json("POST", "/v1/unload_lora_adapter", {"lora_name": adapter.name})

    def submit(self, request_id: str, ids: list[int], adapter: Adapter, sampling: Sampling) -> _Handle:
        body: dict[str, Any] = {
            "model": adapter.name,
            "prompt": ids,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "repetition_penalty": sampling.repetition_penalty,
            "stop_token_ids": sampling.stop_token_ids,
            "ignore_eos": sampling.ignore_eos,
            "stream": True,
            "return_token_ids": True,
            "request_id": request_id,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        handle = _Handle()
        cancelled = threading.Event()
        response = self._open("POST", "/v1/completions", body)  # errors surface in the caller

        def read() -> None:
            try:
                with response:
                    for raw in response:
                        if cancelled.is_set():
                            break
                        line = raw.decode("utf-8").strip()
                        if not line.startswith("data:"):
                            continue
                        data = line[len("data:") :].strip()
                        if data == "[DONE]":
                            break
                        chunk = json.loads(data)
                        if "error" in chunk:
                            raise UserError(f"the vLLM server failed a reply: {chunk['error']}")
                        for choice in chunk.get("choices", []):
                            delta = list(choice.get("token_ids") or [])
                            if delta:
                                handle.out.put(delta)
                handle.out.put(_END)
            except Exception as exc:
                handle.out.put(exc)

        def abort() -> None:
            cancelled.set()  # closing the connection makes the server abort the request
            with contextlib.suppress(Exception):
                response.close()

        threading.Thread(target=read, name=f"doppelkit-vllm-{request_id}", daemon=True).start()
        handle.abort = abort
        return handle

    def close(self) -> None:
        pass  # the server is not ours to stop
