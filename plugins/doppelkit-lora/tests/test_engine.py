"""The serving engine: one base for many personas, LRU adapters, mixed batches, fresh versions."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_testkit import (
    ERIK,
    GREEDY,
    JO,
    MAYA,
    build_tiny_base,
    chat_formatter,
    make_engine,
    publish_random_adapter,
    thread,
)

from doppelkit import artifacts
from doppelkit.errors import PersonaError, UserError
from doppelkit.home import Home
from doppelkit.interfaces import Engine
from doppelkit.models import Persona, User
from doppelkit.testing.contracts import EngineContract
from doppelkit_lora.model.tiny import TinyBase
from doppelkit_lora.serve.adapter_files import UnsafeAdapterError
from doppelkit_lora.serve.engine import PeftEngine

QUESTION = "did the deploy go out?"
SEEDS = {MAYA.id: 11, ERIK.id: 12, JO.id: 13}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, TinyBase]:
    """A home with three published personas (read-only for the tests that use it)."""
    home = Home.at(tmp_path_factory.mktemp("engine") / "home")
    base = build_tiny_base(home)
    for persona in (MAYA, ERIK, JO):
        publish_random_adapter(home, base, persona, seed=SEEDS[persona.id])
    return home, base


@pytest.fixture
def own_home(tmp_path: Path) -> tuple[Home, TinyBase]:
    """A home this test may change (publish, corrupt)."""
    home = Home.at(tmp_path / "home")
    base = build_tiny_base(home)
    publish_random_adapter(home, base, MAYA, seed=SEEDS[MAYA.id])
    return home, base


@pytest.fixture
def engine(shared: tuple[Home, TinyBase]) -> Any:
    with make_engine(shared[0], GREEDY.model_copy(update={"max_resident": 3})) as engine:
        yield engine


def text_of(engine: PeftEngine, persona: Persona, question: str = QUESTION) -> str:
    return "".join(engine.stream(persona, thread(question, persona=persona)))


def test_it_is_an_engine(engine: PeftEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.current_version(MAYA.team, MAYA.id) == "v1"
    assert engine.current_version(MAYA.team, "U0NOBODY") is None


def test_one_base_load_serves_several_personas(engine: PeftEngine) -> None:
    replies = {p.id: text_of(engine, p) for p in (MAYA, ERIK, JO, MAYA, ERIK)}
    assert engine.stats.base_loads == 1
    assert engine.stats.adapter_loads == 3, "each persona's adapter is loaded once"
    assert len(set(replies.values())) == 3, f"each persona answers with its own adapter: {replies}"
    assert sorted(engine.resident()) == ["T0TEST__U0ERIK__v1", "T0TEST__U0JO__v1", "T0TEST__U0MAYA__v1"]


def test_least_recently_used_adapter_is_evicted(shared: tuple[Home, TinyBase]) -> None:
    with make_engine(shared[0], GREEDY.model_copy(update={"max_resident": 2})) as engine:
        first = text_of(engine, MAYA)
        text_of(engine, ERIK)
        text_of(engine, MAYA)  # maya is now the most recently used
        text_of(engine, JO)  # over the limit: erik goes
        assert engine.resident() == ["T0TEST__U0MAYA__v1", "T0TEST__U0JO__v1"]
        assert engine.stats.evictions == 1
        assert engine.stats.adapter_loads == 3
        text_of(engine, ERIK)  # back again: reloaded, and maya (now LRU) goes
        assert engine.resident() == ["T0TEST__U0JO__v1", "T0TEST__U0ERIK__v1"]
        assert engine.stats.adapter_loads == 4
        assert text_of(engine, MAYA) == first, "an evicted and reloaded adapter answers the same"
        assert engine.stats.base_loads == 1


def test_mixed_batch_gives_the_same_text_as_separate_requests(engine: PeftEngine) -> None:
    requests = [
        (MAYA, thread(QUESTION)),
        (ERIK, thread("lunch at noon?", persona=ERIK)),
        (JO, thread("why is CI red again?", persona=JO)),
        (MAYA, thread("who owns the billing service?")),
    ]
    separate = [engine.reply(p, t) for p, t in requests]
    batches_before = engine.stats.batches
    together = engine.reply_many(requests)
    assert together == separate
    assert engine.stats.batches == batches_before + 1, "all four ran in one batch"
    assert engine.stats.largest_batch == 4 and engine.stats.mixed_batches >= 1


def test_concurrent_callers_each_get_their_own_reply(engine: PeftEngine) -> None:
    personas = [MAYA, ERIK, JO] * 2
    expected = {p.id: engine.reply(p, thread(QUESTION, persona=p)) for p in personas}
    results: dict[int, list[str]] = {}

    def ask(i: int, persona: Persona) -> None:
        results[i] = engine.reply(persona, thread(QUESTION, persona=persona))

    threads = [threading.Thread(target=ask, args=(i, p)) for i, p in enumerate(personas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [results[i] for i in range(len(personas))] == [expected[p.id] for p in personas]
    assert engine.stats.base_loads == 1


def test_a_retrain_is_picked_up_without_restart(own_home: tuple[Home, TinyBase]) -> None:
    home, base = own_home
    with make_engine(home) as engine:
        v1_text = text_of(engine, MAYA)
        publish_random_adapter(home, base, MAYA, seed=99)  # the trainer publishes v2 meanwhile
        assert engine.current_version(MAYA.team, MAYA.id) == "v2"
        v2_text = text_of(engine, MAYA)
        assert engine.resident() == ["T0TEST__U0MAYA__v2"], "the old version is dropped at once"
        assert engine.stats.base_loads == 1
    with make_engine(home) as fresh:
        assert text_of(fresh, MAYA) == v2_text, "the running engine serves exactly what a new one would"
    assert v2_text != v1_text


def test_a_republished_version_with_the_same_name_is_not_stale(own_home: tuple[Home, TinyBase]) -> None:
    """The persona was deleted and retrained: ``v1`` again, but other weights."""
    home, base = own_home
    with make_engine(home) as engine:
        old = text_of(engine, MAYA)
        shutil.rmtree(home.adapters(MAYA.team, MAYA.id))
        publish_random_adapter(home, base, MAYA, seed=7)
        assert engine.current_version(MAYA.team, MAYA.id) == "v1"
        new = text_of(engine, MAYA)
        assert engine.stats.adapter_loads == 2, "same version name, new manifest: reloaded"
    with make_engine(home) as fresh:
        assert text_of(fresh, MAYA) == new
    assert new != old


def test_stop_sequences_end_the_reply(shared: tuple[Home, TinyBase]) -> None:
    with make_engine(shared[0]) as engine:
        words = text_of(engine, ERIK).split()
    assert len(words) >= 3, words
    stop = words[2]
    cut = words[: words.index(stop)]
    with make_engine(shared[0], GREEDY.model_copy(update={"stop": [stop]})) as engine:
        assert text_of(engine, ERIK) == " ".join(cut)


def test_stream_chunks_add_up_to_the_reply(engine: PeftEngine) -> None:
    chunks = list(engine.stream(JO, thread(QUESTION, persona=JO)))
    assert len(chunks) > 1, "text arrives in pieces while it is generated"
    assert engine.reply(JO, thread(QUESTION, persona=JO)) == ["".join(chunks)]


def test_a_multi_message_reply_is_split_by_the_personas_formatter() -> None:
    from doppelkit.reply_text import ReplyCutter
    from doppelkit.serving import ReplyText
    from doppelkit.testing import make_context
    from doppelkit_lora.serve.engine import _Request

    request = _Request(MAYA, thread(QUESTION), None, seed=0)
    request.start(ReplyText(ReplyCutter(), lambda ids: ""), "v1", chat_formatter(make_context(Path("."))))
    for piece in ["yep shipped it\n\n-", "--\n\nall green", " so far\n\n---\n\n:rocket:"]:
        request.out.put(piece)
    request.finish()
    assert request.messages() == ["yep shipped it", "all green so far", ":rocket:"]


def test_no_adapter_is_a_persona_error(engine: PeftEngine) -> None:
    nobody = Persona(team=MAYA.team, user=User(id="U0NOBODY", display_name="nobody"))
    with pytest.raises(PersonaError, match="run `doppelkit persona.user=U0NOBODY` first"):
        engine.reply(nobody, thread(QUESTION))


@pytest.mark.parametrize("team, user", [("T0TEST", "../../etc"), ("..", "U0MAYA"), ("T0TEST", "a/b")])
def test_unsafe_ids_never_reach_the_filesystem(engine: PeftEngine, team: str, user: str) -> None:
    with pytest.raises(ValueError, match="not a valid ID"):
        engine.current_version(team, user)
    with pytest.raises(ValueError, match="not a valid ID"):
        engine.reply(Persona(team=team, user=User(id=user)), thread(QUESTION))


def test_pickle_only_adapter_is_refused(
    own_home: tuple[Home, TinyBase], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _ = own_home
    version = home.adapters(MAYA.team, MAYA.id) / "v1"
    (version / "adapter_model.safetensors").rename(version / "adapter_model.bin")
    import torch

    def no_pickle(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("torch.load must never run on an adapter")

    monkeypatch.setattr(torch, "load", no_pickle)
    with make_engine(home) as engine, pytest.raises(UserError, match="adapter_model.safetensors"):
        engine.reply(MAYA, thread(QUESTION))


def test_adapter_outside_home_is_refused(own_home: tuple[Home, TinyBase], tmp_path: Path) -> None:
    home, _ = own_home
    version = home.adapters(MAYA.team, MAYA.id) / "v1"
    elsewhere = tmp_path / "elsewhere" / "v1"
    shutil.copytree(version, elsewhere)
    shutil.rmtree(version)
    version.symlink_to(elsewhere, target_is_directory=True)
    assert artifacts.current_version(home, MAYA.team, MAYA.id) is not None  # it looks published
    with make_engine(home) as engine, pytest.raises(UnsafeAdapterError, match="outside home"):
        engine.reply(MAYA, thread(QUESTION))


def test_serving_is_offline(own_home: tuple[Home, TinyBase], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    make_engine(own_home[0]).close()
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True


def test_engine_peft_is_registered_by_the_plugin() -> None:
    from doppelkit.plugins import build_registries, get_plugin_manager

    registries = build_registries(get_plugin_manager())
    assert registries.engine.get("peft") is PeftEngine
    assert registries.engine.registration("peft").plugin == "lora"


class TestPeftEngineContract(EngineContract):
    @pytest.fixture
    def engine(self, shared: tuple[Home, TinyBase]) -> Any:
        with make_engine(shared[0]) as engine:
            yield engine

    @pytest.fixture
    def persona(self) -> Persona:
        return MAYA


def test_stacked_mixed_batch_matches_peft_adapter_names(engine: PeftEngine) -> None:
    """The fast mixed-batch path computes what PEFT's ``adapter_names`` does (and a base row)."""
    import torch

    from doppelkit_lora.decoding.mixed_lora import StackedLora, supported

    for persona in (MAYA, ERIK, JO):
        text_of(engine, persona)
    assert engine._base is not None
    model = engine._base.model
    names = engine.resident()
    rows = [names[0], names[1], None, names[2], names[0]]
    adapters = sorted(set(rows), key=lambda name: name or "")
    assert supported(model, names)
    stacked = StackedLora(model, adapters, torch.tensor([adapters.index(r) for r in rows]))
    input_ids = torch.randint(10, 60, (len(rows), 7))
    with torch.inference_mode():
        expected = model(input_ids=input_ids, adapter_names=[r or "__base__" for r in rows]).logits
        with stacked.applied():
            got = model(input_ids=input_ids).logits
        stacked.select(torch.tensor([adapters.index(r) for r in rows[1:3]]))
        with stacked.applied():
            shrunk = model(input_ids=input_ids[1:3]).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(shrunk, expected[1:3], rtol=1e-4, atol=1e-5)
