"""Rendering: labels on the persona's words only, exact prompt prefixes, templates."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from doppelkit.builtins.formatters import AlpacaFormatter, ChatFormatter
from doppelkit.builtins.formatters.alpaca import SEED_INSTRUCTION
from doppelkit.builtins.formatters.rendering import IGNORE_INDEX
from doppelkit.interfaces import RunContext
from doppelkit.models import ChatMessage, DatasetReport, Example
from doppelkit.testing.samples import sample_persona, sample_thread
from doppelkit.testing.tokenizers import build_test_tokenizer

SEED_PROMPT = (
    "You are {user}, employee at a fast-growing startup. Below is an input conversation that takes "
    "place in the company's internal Slack. Write a response that appropriately continues the "
    "conversation.\n\n### Input:\n{input}\n\n### Response:\n{response}"
)


@pytest.fixture(scope="module")
def plain_tokenizer() -> Any:
    return build_test_tokenizer()


@pytest.fixture(scope="module")
def chat_tokenizer() -> Any:
    return build_test_tokenizer(chat_template=True)


@pytest.fixture(scope="module")
def bos_tokenizer() -> Any:
    return build_test_tokenizer(add_bos=True)


def examples(formatter: Any) -> list[Example]:
    return list(formatter.examples(sample_thread(), sample_persona(), DatasetReport()))


@pytest.mark.parametrize("formatter_cls", [ChatFormatter, AlpacaFormatter])
@pytest.mark.parametrize("variant", ["plain_tokenizer", "chat_tokenizer", "bos_tokenizer"])
def test_unmasked_tokens_decode_to_exactly_the_reply_and_eos(
    formatter_cls: Any, variant: str, run_context: RunContext, request: pytest.FixtureRequest
) -> None:
    tokenizer = request.getfixturevalue(variant)
    formatter = formatter_cls(formatter_cls.Config(), run_context)
    for example in examples(formatter):
        rendered = formatter.render(example, tokenizer)
        trained = [t for t in rendered.labels if t != IGNORE_INDEX]
        assert tokenizer.decode(trained, skip_special_tokens=False) == example.response + tokenizer.eos_token
        assert rendered.input_ids[-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("formatter_cls", [ChatFormatter, AlpacaFormatter])
def test_train_on_inputs_trains_on_everything(
    formatter_cls: Any, run_context: RunContext, plain_tokenizer: Any
) -> None:
    formatter = formatter_cls(formatter_cls.Config(train_on_inputs=True), run_context)
    rendered = formatter.render(examples(formatter)[0], plain_tokenizer)
    assert rendered.labels == rendered.input_ids


@pytest.mark.parametrize("formatter_cls", [ChatFormatter, AlpacaFormatter])
@pytest.mark.parametrize("variant", ["plain_tokenizer", "chat_tokenizer", "bos_tokenizer"])
def test_render_tokenises_the_serving_prompt_then_the_reply(
    formatter_cls: Any, variant: str, run_context: RunContext, request: pytest.FixtureRequest
) -> None:
    tokenizer = request.getfixturevalue(variant)
    formatter = formatter_cls(formatter_cls.Config(), run_context)
    for example in examples(formatter):
        prompt = formatter.render_prompt(example.messages[:-1], tokenizer)
        rendered = formatter.render(example, tokenizer)
        assert tokenizer.decode(rendered.input_ids, skip_special_tokens=False) == (
            prompt + example.response + tokenizer.eos_token
        )
        n_prompt = len(tokenizer.encode(prompt, add_special_tokens=False))
        assert rendered.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
        assert IGNORE_INDEX not in rendered.labels[n_prompt:]


def test_chat_uses_the_tokenizers_chat_template(run_context: RunContext, chat_tokenizer: Any) -> None:
    formatter = ChatFormatter(ChatFormatter.Config(), run_context)
    messages = [ChatMessage(role="system", content="S"), ChatMessage(role="user", content="Ann: hi")]
    assert formatter.render_prompt(messages, chat_tokenizer) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nAnn: hi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chat_fallback_template_without_one(run_context: RunContext, plain_tokenizer: Any) -> None:
    formatter = ChatFormatter(ChatFormatter.Config(), run_context)
    messages = [
        ChatMessage(role="system", content="S"),
        ChatMessage(role="user", content="Ann: hi"),
        ChatMessage(role="assistant", content="hello"),
        ChatMessage(role="user", content="Bob: yo"),
    ]
    assert formatter.render_prompt(messages, plain_tokenizer) == (
        "<|system|>\nS</s>\n<|user|>\nAnn: hi</s>\n<|assistant|>\nhello</s>\n"
        "<|user|>\nBob: yo</s>\n<|assistant|>\n"
    )


def test_fallback_writes_bos_when_the_tokenizer_adds_one(run_context: RunContext, bos_tokenizer: Any) -> None:
    formatter = ChatFormatter(ChatFormatter.Config(), run_context)
    prompt = formatter.render_prompt([ChatMessage(role="user", content="hi")], bos_tokenizer)
    assert prompt.startswith("<s><|user|>")
    ids = bos_tokenizer.encode(prompt, add_special_tokens=False)
    assert ids.count(bos_tokenizer.bos_token_id) == 1, "one BOS, at the start"


def test_configured_chat_template_overrides_the_tokenizers(
    run_context: RunContext, chat_tokenizer: Any
) -> None:
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] "
    formatter = ChatFormatter(ChatFormatter.Config(chat_template=template), run_context)
    prompt = formatter.render_prompt([ChatMessage(role="user", content="hi")], chat_tokenizer)
    assert prompt == "[user] hi\n[assistant] "


def test_a_template_refusing_system_turns_gets_the_system_prompt_in_the_first_user_turn(
    run_context: RunContext, chat_tokenizer: Any
) -> None:
    template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}"
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}<assistant>"
    )
    formatter = ChatFormatter(ChatFormatter.Config(chat_template=template), run_context)
    messages = [ChatMessage(role="system", content="You are Erik."), ChatMessage(role="user", content="hi")]
    assert formatter.render_prompt(messages, chat_tokenizer) == "<user>You are Erik.\n\nhi</user><assistant>"


def test_alpaca_default_is_the_seed_template(run_context: RunContext, plain_tokenizer: Any) -> None:
    formatter = AlpacaFormatter(AlpacaFormatter.Config(), run_context)
    example = examples(formatter)[-1]
    rendered = formatter.render(example, plain_tokenizer)
    transcript = example.messages[1].content
    expected = SEED_PROMPT.format(user="Erik", input=transcript, response=example.response)
    assert plain_tokenizer.decode(rendered.input_ids) == expected + "</s>"
    assert SEED_INSTRUCTION.format(user="Erik", platform="Slack") == example.messages[0].content


def test_alpaca_transcript_tags_every_speaker(run_context: RunContext) -> None:
    formatter = AlpacaFormatter(AlpacaFormatter.Config(), run_context)
    example = examples(formatter)[-1]
    assert [m.role for m in example.messages] == ["system", "user", "assistant"]
    assert example.messages[1].content.splitlines() == [
        "Ann: hey @Erik, did the deploy go out? <fingers crossed>",
        "Erik: yes, it went out an hour ago, see the run (https://ci.example.com/42)",
        "Erik: everything is green & the error rate is flat :tada:",
        "Bob: nice! any gotchas for the migration?",
        "Erik: ok",
        "Ann: @Erik what about the migration itself?",
    ]


@pytest.mark.parametrize(
    "template",
    [
        "{{ system }}\nIN: {{ input }}\nOUT: {{ response }}",  # Jinja
        "{system}\nIN: {input}\nOUT: {response}",  # format-string
    ],
)
def test_alpaca_template_is_configurable(
    template: str, run_context: RunContext, plain_tokenizer: Any
) -> None:
    formatter = AlpacaFormatter(
        AlpacaFormatter.Config(template=template, system_prompt="Be {user}."), run_context
    )
    messages = [ChatMessage(role="system", content="Be Erik."), ChatMessage(role="user", content="Ann: hi")]
    assert formatter.render_prompt(messages, plain_tokenizer) == "Be Erik.\nIN: Ann: hi\nOUT: "


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("{system}\n{input}\n{response}\n### end", "must end with {response}"),
        ("{user}: {input}\n{response}", "placeholders are"),
        ("{{ system }} {{ nope }} {{ response }}", "placeholders are"),
        ("{system} {input}", "must end with {response}"),
    ],
)
def test_bad_alpaca_templates_are_rejected_at_validation(template: str, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        AlpacaFormatter.Config(template=template)


def test_unknown_system_prompt_placeholders_are_rejected() -> None:
    with pytest.raises(ValidationError, match="available"):
        ChatFormatter.Config(system_prompt="You are {persona}.")
    assert ChatFormatter.Config(system_prompt="You are {user} in #{channel}. {{json}}")


def test_channel_placeholder_in_the_system_prompt(run_context: RunContext) -> None:
    formatter = ChatFormatter(ChatFormatter.Config(system_prompt="{user} in #{channel}"), run_context)
    assert examples(formatter)[0].messages[0].content == "Erik in #general"


def test_a_tokenizer_without_eos_is_an_error(run_context: RunContext) -> None:
    tokenizer = build_test_tokenizer()
    tokenizer.eos_token = None
    formatter = ChatFormatter(ChatFormatter.Config(), run_context)
    with pytest.raises(ValueError, match="eos"):
        formatter.render(examples(formatter)[0], tokenizer)
