"""Contract test suites, one per plugin kind.

A plugin's tests subclass the suite for its kind and provide the fixtures it documents::

    from doppelkit.testing.contracts import SourceContract

    class TestMySource(SourceContract):
        @pytest.fixture
        def source(self, run_context):
            return MySource(MySource.Config(path=...), run_context)

Every first-party plugin passes these; a third-party plugin that does can be relied on by the
pipeline. The suites check behaviour the rest of doppelkit depends on, not implementation.
"""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from doppelkit.interfaces import (
    Backend,
    Engine,
    Formatter,
    Frontend,
    PartitionedSource,
    Rendered,
    Source,
    Trainer,
    TrainJob,
)
from doppelkit.models import ChatMessage, DatasetReport, Example, Message, Persona, Thread, validate_safe_id
from doppelkit.registry import Registry

_forked: tuple[Any, list[Any]] | None = None  # what a forked reader inherits (source, parts)


def _read_part_dumped(index: int) -> list[dict[str, Any]]:
    assert _forked is not None
    source, parts = _forked
    return [t.model_dump() for t in source.partition_threads(parts[index], DatasetReport())]


def check_component_class(component: type[Any], kind: str) -> None:
    """The shape every component shares: a name, a strict pydantic Config, registrable."""
    assert isinstance(component.name, str) and component.name
    assert issubclass(component.Config, BaseModel)
    registry: Registry[Any] = Registry(kind)
    registry.add(component, plugin="contract-test")  # raises if the class is malformed
    with pytest.raises(ValidationError):
        component.Config.model_validate({"definitely_not_an_option_xyz": 1})


class SourceContract:
    """Fixture to provide: ``source`` (an instance, reading a small workspace)."""

    @pytest.fixture
    def source(self) -> Source:
        raise NotImplementedError("provide a `source` fixture")

    def test_component_shape(self, source: Source) -> None:
        check_component_class(type(source), "source")
        assert isinstance(source, Source)

    def test_workspace(self, source: Source) -> None:
        ws = source.workspace()
        validate_safe_id(ws.team, "team")
        assert ws.users, "a workspace has members"
        assert len({u.id for u in ws.users}) == len(ws.users), "user IDs are unique"

    def test_threads_are_ordered_and_belong_to_the_workspace(self, source: Source) -> None:
        ws = source.workspace()
        report = DatasetReport()
        threads = list(source.threads(report))
        assert threads, "the test workspace should yield at least one thread"
        for thread in threads:
            assert isinstance(thread, Thread)
            assert thread.team == ws.team
            assert thread.messages, "threads are never empty"
            keys = [m.ts_key for m in thread.messages]
            assert keys == sorted(keys), f"messages of {thread.channel}/{thread.ts} not ordered by ts"
            assert len(set(m.ts for m in thread.messages)) == len(thread.messages), "no duplicate messages"

    def test_threads_are_repeatable(self, source: Source) -> None:
        first = [t.model_dump() for t in source.threads(DatasetReport())]
        second = [t.model_dump() for t in source.threads(DatasetReport())]
        assert first == second, "reading the same workspace twice gives the same threads"

    def test_parts_read_as_the_whole(self, source: Source) -> None:
        """A PartitionedSource: its parts, read one by one, are its threads (see the protocol)."""
        if not isinstance(source, PartitionedSource):
            pytest.skip("not a PartitionedSource")
        whole_report, parts_report = DatasetReport(), DatasetReport()
        whole = [t.model_dump() for t in source.threads(whole_report)]
        parts = source.partitions(parts_report)
        pickle.loads(pickle.dumps(parts))  # parts travel to worker processes
        by_part = [[t.model_dump() for t in source.partition_threads(p, parts_report)] for p in parts]
        assert [t for threads in by_part for t in threads] == whole
        assert parts_report.model_dump(exclude={"created"}) == whole_report.model_dump(exclude={"created"})
        channels = [{t["channel"] for t in threads} for threads in by_part]
        assert sum(map(len, channels)) == len(set().union(*channels)), "a channel spans two parts"

    def test_parts_can_be_read_in_a_forked_process(self, source: Source) -> None:
        if not isinstance(source, PartitionedSource):
            pytest.skip("not a PartitionedSource")
        if "fork" not in multiprocessing.get_all_start_methods():
            pytest.skip("no fork here")
        global _forked
        parts = source.partitions(DatasetReport())
        here = [[t.model_dump() for t in source.partition_threads(p, DatasetReport())] for p in parts]
        _forked = (source, parts)  # inherited by the forked workers, as ingest's are
        try:
            with multiprocessing.get_context("fork").Pool(2) as pool:
                there = pool.map(_read_part_dumped, range(len(parts)))
        finally:
            _forked = None
        assert there == here


class FormatterContract:
    """Fixtures to provide: ``formatter``, ``persona`` (a Persona), ``thread`` (a Thread with
    qualifying persona replies from ``persona``), ``tokenizer`` (a HF-style tokenizer)."""

    @pytest.fixture
    def formatter(self) -> Formatter:
        raise NotImplementedError("provide a `formatter` fixture")

    def test_component_shape(self, formatter: Formatter) -> None:
        check_component_class(type(formatter), "formatter")
        assert isinstance(formatter, Formatter)

    def test_examples_end_with_the_personas_own_words(
        self, formatter: Formatter, thread: Thread, persona: Persona
    ) -> None:
        examples = list(formatter.examples(thread, persona, DatasetReport()))
        assert examples, "the fixture thread has qualifying persona replies"
        persona_text = " ".join(m.text for m in thread.messages if m.user == persona.id)
        for ex in examples:
            assert isinstance(ex, Example)
            assert ex.messages[-1].role == "assistant"
            assert ex.messages[-1].content.strip()
            for word in ex.messages[-1].content.split()[:5]:
                assert word.strip("*_~`") in persona_text or word.startswith("@"), word
            assert ex.meta.get("thread_ts") == thread.ts

    def test_render_masks_the_prompt(
        self, formatter: Formatter, thread: Thread, persona: Persona, tokenizer: Any
    ) -> None:
        example = next(iter(formatter.examples(thread, persona, DatasetReport())))
        rendered = formatter.render(example, tokenizer)
        assert isinstance(rendered, Rendered)
        assert len(rendered.input_ids) == len(rendered.labels)
        assert rendered.labels[0] == -100, "the prompt is masked"
        trained = [t for t in rendered.labels if t != -100]
        assert trained, "the response is trained on"
        first = next(i for i, t in enumerate(rendered.labels) if t != -100)
        assert rendered.labels[first:] == rendered.input_ids[first:]

    def test_serving_prompt_is_the_training_prefix(
        self, formatter: Formatter, thread: Thread, persona: Persona, tokenizer: Any
    ) -> None:
        examples = list(formatter.examples(thread, persona, DatasetReport()))
        example = examples[-1]
        reply_ts = example.meta["message_ts"][0]
        upto = thread.model_copy(
            update={"messages": list(itertools.takewhile(lambda m: m.ts != reply_ts, thread.messages))}
        )
        served = formatter.render_prompt(formatter.conversation(upto, persona), tokenizer)
        trained = formatter.render_prompt(example.messages[:-1], tokenizer)
        assert served == trained

    def test_render_prompt_is_exactly_what_render_masks(
        self, formatter: Formatter, thread: Thread, persona: Persona, tokenizer: Any
    ) -> None:
        """Serving tokenises ``render_prompt`` with ``add_special_tokens=False``; those ids are
        the masked head of the training ids, and the rest is the reply."""
        for example in formatter.examples(thread, persona, DatasetReport()):
            rendered = formatter.render(example, tokenizer)
            prompt = formatter.render_prompt(example.messages[:-1], tokenizer)
            prompt_ids = list(tokenizer.encode(prompt, add_special_tokens=False))
            assert rendered.input_ids[: len(prompt_ids)] == prompt_ids
            first = next(i for i, t in enumerate(rendered.labels) if t != -100)
            assert first == len(prompt_ids), "exactly the prompt is masked"

    def test_bot_messages_are_never_the_persona(
        self, formatter: Formatter, thread: Thread, persona: Persona
    ) -> None:
        as_bot = [
            m.model_copy(update={"is_bot": True}) if m.user == persona.id else m for m in thread.messages
        ]
        report = DatasetReport()
        assert list(formatter.examples(thread.model_copy(update={"messages": as_bot}), persona, report)) == []

    def test_conversation_takes_the_bots_user_id(
        self, formatter: Formatter, thread: Thread, persona: Persona
    ) -> None:
        messages = formatter.conversation(thread, persona, bot_user_id="U0SERVINGBOT")
        assert messages and all(isinstance(m, ChatMessage) for m in messages)


class TrainerContract:
    """Fixtures to provide: ``trainer`` and ``train_job`` (a small, fast TrainJob)."""

    @pytest.fixture
    def trainer(self) -> Trainer:
        raise NotImplementedError("provide a `trainer` fixture")

    def test_component_shape(self, trainer: Trainer) -> None:
        check_component_class(type(trainer), "trainer")
        assert isinstance(trainer, Trainer)

    def test_train_publishes_a_new_version_each_time(self, trainer: Trainer, train_job: TrainJob) -> None:
        first = trainer.train(train_job)
        assert first.adapter_dir.is_dir()
        assert (first.adapter_dir / "manifest.json").is_file()
        second = trainer.train(train_job)
        assert second.version != first.version
        assert first.adapter_dir.is_dir(), "publishing a new version keeps the previous one"

    def test_publishes_where_engines_look(self, trainer: Trainer, train_job: TrainJob) -> None:
        """The adapter is published in the core layout (doppelkit.artifacts), as current."""
        from doppelkit.artifacts import current_version
        from doppelkit.home import Home

        persona = train_job.persona
        result = trainer.train(train_job)
        home = Home(result.adapter_dir.parents[3])  # home/adapters/<team>/<user>/<version>
        assert result.adapter_dir.parent == home.adapters(persona.team, persona.id)
        published = current_version(home, persona.team, persona.id)
        assert published is not None and published.version == result.version
        assert published.manifest.formatter == train_job.formatter.name


class EngineContract:
    """Fixtures to provide: ``engine`` (an instance over a home where ``persona`` has a published
    adapter; deterministic — greedy or seeded — so a reply can be compared with its stream)
    and ``persona`` (that published :class:`~doppelkit.models.Persona`)."""

    OTHER = "U0CONTRACTX"  # the colleague talking to the persona

    @pytest.fixture
    def engine(self) -> Engine:
        raise NotImplementedError("provide an `engine` fixture")

    @pytest.fixture
    def persona(self) -> Persona:
        raise NotImplementedError("provide a `persona` fixture (published in the engine's home)")

    def thread(self, persona: Persona) -> Thread:
        return Thread(
            team=persona.team,
            channel="C0CONTRACT",
            ts="1.000000",
            messages=[Message(ts="1.000000", user=self.OTHER, text="hi, how is it going with the deploy?")],
            user_labels={self.OTHER: "Sam", persona.id: persona.label},
        )

    def test_component_shape(self, engine: Engine) -> None:
        check_component_class(type(engine), "engine")
        assert isinstance(engine, Engine)

    def test_lists_and_versions_the_published_persona(self, engine: Engine, persona: Persona) -> None:
        listed = {(m.team, m.persona_id): m for m in engine.personas()}
        assert (persona.team, persona.id) in listed, "personas() lists every published persona"
        version = engine.current_version(persona.team, persona.id)
        assert version is not None and version == listed[(persona.team, persona.id)].version

    def test_an_unknown_persona_has_no_version_and_no_reply(self, engine: Engine, persona: Persona) -> None:
        from doppelkit.errors import PersonaError
        from doppelkit.models import User

        assert engine.current_version(persona.team, "U0NOBODYZZ") is None
        stranger = Persona(team=persona.team, user=User(id="U0NOBODYZZ", display_name="nobody"))
        with pytest.raises(PersonaError):
            engine.reply(stranger, self.thread(persona))

    def test_reply_is_the_personas_messages(self, engine: Engine, persona: Persona) -> None:
        replies = engine.reply(persona, self.thread(persona))
        assert isinstance(replies, list) and replies, "a reply is at least one message"
        for message in replies:
            assert isinstance(message, str) and message.strip(), "no empty messages"
            assert message == message.strip(), "messages are stripped"
            assert "\n---\n" not in f"\n{message}\n", "the reply separator splits messages, it is not in one"
            assert not message.startswith(("Sam:", f"{persona.label}:")), (
                "no speaker tags: the persona speaks"
            )

    def test_stream_gives_the_same_reply(self, engine: Engine, persona: Persona) -> None:
        from doppelkit.builtins.formatters.turns import split_reply

        chunks = list(engine.stream(persona, self.thread(persona)))
        assert all(isinstance(chunk, str) for chunk in chunks)
        assert "".join(chunks).strip(), "the stream is not empty"
        assert split_reply("".join(chunks)) == engine.reply(persona, self.thread(persona))

    def test_close_can_be_called_twice(self, engine: Engine) -> None:
        engine.close()
        engine.close()


class BackendContract:
    """Fixture to provide: ``backend``."""

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("provide a `backend` fixture")

    def test_component_shape(self, backend: Backend) -> None:
        check_component_class(type(backend), "backend")
        assert isinstance(backend, Backend)

    def test_says_where_steps_run(self, backend: Backend) -> None:
        assert backend.device is None or isinstance(backend.device, str)

    def test_run_returns_the_steps_result(self, backend: Backend) -> None:
        assert backend.run(pow, 2, 10) == 1024
        assert backend.run(dict, a=1) == {"a": 1}

    def test_run_propagates_the_steps_error(self, backend: Backend) -> None:
        with pytest.raises(ZeroDivisionError):
            backend.run(divmod, 1, 0)


class FrontendContract:
    """Fixture to provide: ``frontend`` (constructed, not serving)."""

    @pytest.fixture
    def frontend(self) -> Frontend:
        raise NotImplementedError("provide a `frontend` fixture")

    def test_component_shape(self, frontend: Frontend) -> None:
        check_component_class(type(frontend), "frontend")
        assert isinstance(frontend, Frontend)
