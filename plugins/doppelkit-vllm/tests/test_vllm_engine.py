"""engine=vllm on a tiny Llama on the CPU: the same replies as engine=peft, fresh versions,
streaming, and base rows that never pick up a persona."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from vllm_testkit import ERIK, JO, MAYA, ZED, thread

from doppelkit.home import Home
from doppelkit_lora.model.tiny import TinyBase
from doppelkit_lora.testing.engines import publish_random_adapter

QUESTIONS = [
    "did the deploy go out?",
    "lunch at noon?",
    "why is CI red again?",
    "who owns the billing service?",
]


def test_greedy_replies_equal_the_peft_engines_for_several_personas_in_one_batch(
    vllm_engine: Any, peft_engine: Any
) -> None:
    requests = [
        (MAYA, thread(QUESTIONS[0])),
        (ERIK, thread(QUESTIONS[1], persona=ERIK)),
        (JO, thread(QUESTIONS[2], persona=JO)),
        (MAYA, thread(QUESTIONS[3])),
        (ERIK, thread(QUESTIONS[0], persona=ERIK)),
    ]
    expected = peft_engine.reply_many(requests)
    assert len({tuple(r) for r in expected}) > 1, f"the personas answer differently: {expected}"
    assert vllm_engine.reply_many(requests) == expected
    assert vllm_engine.stats.base_loads == 1


def test_greedy_tokens_equal_peft_generate(vllm_engine: Any, published: tuple[Home, TinyBase]) -> None:
    """Token for token, several personas and the base model mixed in one vLLM batch."""
    home, base = published
    prompts = [prompt_of(vllm_engine, q) for q in QUESTIONS[:3]]
    rows: list[tuple[Any, list[int]]] = [
        (MAYA, prompts[0]),
        (None, prompts[0]),
        (ERIK, prompts[1]),
        (None, prompts[2]),
        (JO, prompts[2]),
        (MAYA, prompts[1]),
    ]
    with pytest.raises(ValueError, match="token IDs of this base"):
        vllm_engine.generate_ids([(MAYA, [5, 10_000])])  # vLLM's worker would die on it
    got = vllm_engine.generate_ids(rows)
    want = [reference_ids(home, base, persona, ids, vllm_engine) for persona, ids in rows]
    assert got == want
    assert got[1] != got[0] or got[3] != got[4], "a persona leaking into a base row would show here"


def test_base_rows_never_pick_up_a_persona(vllm_engine: Any, published: tuple[Home, TinyBase]) -> None:
    """vLLM on CPU gives a no-adapter row the adapter of another slot in a mixed batch (PR
    #48421): the engine sends base rows through a zero adapter instead."""
    home, base = published
    ids = prompt_of(vllm_engine, QUESTIONS[0])
    mixed = vllm_engine.generate_ids([(MAYA, ids), (ERIK, ids), (None, ids), (JO, ids), (None, ids)])
    alone = reference_ids(home, base, None, ids, vllm_engine)
    assert mixed[2] == alone and mixed[4] == alone
    assert alone not in (mixed[0], mixed[1], mixed[3])
    zero = vllm_engine._zero
    personas = {adapter.lora_id for adapter in vllm_engine.served_adapters().values()}
    assert zero is not None and zero.lora_id not in personas


def test_a_retrain_is_served_at_once_under_a_new_lora_id(
    vllm_engine: Any, published: tuple[Home, TinyBase]
) -> None:
    home, base = published
    prompts = [prompt_of(vllm_engine, q) for q in QUESTIONS]
    v1 = [reference_ids(home, base, ZED, ids, vllm_engine) for ids in prompts]
    assert vllm_engine.generate_ids([(ZED, ids) for ids in prompts]) == v1
    old = vllm_engine.served_adapters()[(ZED.team, ZED.id)]
    removed = vllm_engine.stats.adapters_removed
    publish_random_adapter(home, base, ZED, seed=13)  # the trainer publishes v2 meanwhile
    v2 = [reference_ids(home, base, ZED, ids, vllm_engine) for ids in prompts]
    assert v2 != v1
    assert vllm_engine.generate_ids([(ZED, ids) for ids in prompts]) == v2, "the new version, at once"
    new = vllm_engine.served_adapters()[(ZED.team, ZED.id)]
    assert new.lora_id != old.lora_id and "__v2__" in new.name
    assert vllm_engine.stats.adapters_removed == removed + 1, "the old version is removed from vLLM"
    from vllm_testkit import make_peft

    question = thread(QUESTIONS[1], persona=ZED)
    with make_peft(home) as fresh:
        assert vllm_engine.reply(ZED, question) == fresh.reply(ZED, question)


def test_stream_chunks_add_up_to_the_reply(vllm_engine: Any) -> None:
    chunks = list(vllm_engine.stream(JO, thread(QUESTIONS[0], persona=JO)))
    assert len(chunks) > 1, "text arrives in pieces while it is generated"
    assert vllm_engine.reply(JO, thread(QUESTIONS[0], persona=JO)) == ["".join(chunks)]


def test_a_stream_closed_early_frees_its_request(vllm_engine: Any) -> None:
    stream = vllm_engine.stream(MAYA, thread(QUESTIONS[1]))
    first = next(stream)
    assert first
    stream.close()
    assert sum(vllm_engine._in_use.values()) == 0
    assert vllm_engine.reply(MAYA, thread(QUESTIONS[1])), "the engine carries on"


def test_concurrent_callers_each_get_their_own_reply(vllm_engine: Any) -> None:
    personas = [MAYA, ERIK, JO] * 3
    expected = {p.id: vllm_engine.reply(p, thread(QUESTIONS[2], persona=p)) for p in personas}
    results: dict[int, list[str]] = {}

    def ask(i: int) -> None:
        results[i] = vllm_engine.reply(personas[i], thread(QUESTIONS[2], persona=personas[i]))

    callers = [threading.Thread(target=ask, args=(i,)) for i in range(len(personas))]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=120)
    assert [results[i] for i in range(len(personas))] == [expected[p.id] for p in personas]


def test_an_adapter_above_max_lora_rank_is_refused_clearly(tmp_path: Any) -> None:
    from vllm_testkit import GREEDY, VLLM_TINY, make_vllm

    from doppelkit import artifacts
    from doppelkit.errors import UserError
    from doppelkit_lora.testing.engines import build_tiny_base

    home = Home.at(tmp_path / "home")
    base = build_tiny_base(home, VLLM_TINY, key="rank")
    published = publish_random_adapter(home, base, MAYA, seed=1, rank=16)
    engine = make_vllm(home, GREEDY)  # max_lora_rank=8
    with pytest.raises(UserError, match=r"rank 16, above engine.max_lora_rank=8; set .*=16"):
        engine._check_rank(artifacts.checked_files(home, published))


def test_a_base_with_heads_vllms_cpu_attention_cannot_run_is_refused_clearly(tmp_path: Any) -> None:
    """A tiny base with 16-wide heads (the lora trainer's quickest shape) used to kill vLLM's
    engine process at the first request; every mention then got an apology."""
    from vllm_testkit import VLLM_TINY, make_vllm

    from doppelkit.errors import UserError
    from doppelkit_lora.testing.engines import build_tiny_base

    home = Home.at(tmp_path / "home")
    base = build_tiny_base(home, VLLM_TINY.model_copy(update={"hidden_size": 32}), key="narrow")
    publish_random_adapter(home, base, MAYA, seed=1)
    with make_vllm(home) as engine, pytest.raises(UserError, match=r"heads are 16 wide.*engine=peft"):
        engine.reply(MAYA, thread("lunch?"))


def test_closing_the_engine_fails_a_reply_in_progress(vllm_engine: Any) -> None:
    """Last in this module: it closes the module's engine."""
    from doppelkit.errors import UserError

    vllm_engine.reply(MAYA, thread(QUESTIONS[0]))  # vLLM started
    vllm_engine.config = vllm_engine.config.model_copy(update={"max_new_tokens": 200, "ignore_eos": True})
    vllm_engine._base.stop_ids = frozenset()  # a reply that runs long enough to be cut off
    stream = vllm_engine.stream(MAYA, thread(QUESTIONS[0]))
    next(stream)
    vllm_engine.close()
    started = time.monotonic()
    with pytest.raises(UserError, match="closed"):
        for _chunk in stream:
            pass
    assert time.monotonic() - started < 30, "the caller is released, not left waiting"
    with pytest.raises(UserError, match="closed"):
        vllm_engine.reply(MAYA, thread(QUESTIONS[0]))


def prompt_of(engine: Any, question: str) -> list[int]:
    """The prompt the engine builds for maya, as token IDs (the chat formatter's)."""
    _served, ids, _text = engine._prepare(MAYA, thread(question), None)
    return list(ids)


def reference_ids(home: Home, base: TinyBase, persona: Any, ids: list[int], engine: Any) -> list[int]:
    """Greedy tokens from transformers (+ PEFT for a persona): the reference for vLLM's."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from doppelkit import artifacts

    model: Any = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
    if persona is not None:
        published = artifacts.current_version(home, persona.team, persona.id)
        assert published is not None
        model = PeftModel.from_pretrained(model, str(published.path))
    model.eval()
    stop = set(engine._base.stop_ids)
    out: list[int] = []
    current = list(ids)
    with torch.inference_mode():
        for _ in range(engine.config.max_new_tokens):
            token = int(model(torch.tensor([current])).logits[0, -1].argmax())
            out.append(token)
            if token in stop:
                break
            current.append(token)
    return out
