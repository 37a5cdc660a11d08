"""The ``alpaca`` formatter: the seed's (DoppelBot's) instruction template.

With the defaults and a Slack source (``{platform}`` is the source's platform) the rendered
prompt is exactly the seed's::

    You are {user}, employee at a fast-growing startup. Below is an input conversation that takes place in the company's internal Slack. Write a response that appropriately continues the conversation.

    ### Input:
    {input}

    ### Response:
    {response}

The instruction (first paragraph) is the example's system message (``formatter.system_prompt``,
where ``{user}`` is the persona's name), and ``formatter.template`` lays out ``{system}``,
``{input}`` (the conversation as ``Name: text`` lines, the persona's earlier messages included)
and ``{response}``. Examples are ``[system, user (the transcript), assistant]``.
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from jinja2 import TemplateError
from pydantic import Field, field_validator

from doppelkit.builtins.formatters import rendering, turns
from doppelkit.builtins.formatters.live import scrub_live_thread
from doppelkit.builtins.formatters.options import ThreadOptions
from doppelkit.interfaces import Rendered, RunContext
from doppelkit.models import ChatMessage, DatasetReport, Example, Persona, Thread

SEED_INSTRUCTION = (
    "You are {user}, employee at a fast-growing startup. Below is an input conversation that "
    "takes place in the company's internal {platform}. Write a response that appropriately continues "
    "the conversation."
)
SEED_TEMPLATE = "{system}\n\n### Input:\n{input}\n\n### Response:\n{response}"
TEMPLATE_FIELDS = ("system", "input", "response")


def check_template(template: str) -> None:
    """Raise ``ValueError`` unless ``template`` uses only known fields and ends with the
    response (the prompt must be an exact prefix of the training text)."""
    values = {"system": "\x00S", "input": "\x00I"}
    try:
        with_reply = rendering.fill(template, response="\x00R", **values)
        without = rendering.fill(template, response="", **values)
    except (KeyError, IndexError, ValueError, TemplateError) as exc:
        raise ValueError(
            f"cannot render the template ({type(exc).__name__}: {exc}); its placeholders are "
            + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            + " ({user} goes in system_prompt)"
        ) from None
    if with_reply != without + "\x00R":
        raise ValueError("the template must end with {response} (nothing after it)")


class AlpacaFormatter:
    """Instruction/input/response prompts, one transcript per example (the seed's layout)."""

    name: ClassVar[str] = "alpaca"

    class Config(ThreadOptions):
        system_prompt: str = Field(
            SEED_INSTRUCTION, description="the instruction; {user}, {channel}, {platform}"
        )
        template: str = Field(
            SEED_TEMPLATE,
            description="Jinja ({{ system }}) or format-string ({system}) with {system}, {input}, "
            "{response}; must end with {response}",
        )

        @field_validator("template")
        @classmethod
        def _template_renders(cls, value: str) -> str:
            check_template(value)
            return value

    def __init__(self, config: Config, context: RunContext) -> None:
        self.config = config
        self.context = context

    def examples(self, thread: Thread, persona: Persona, report: DatasetReport) -> Iterator[Example]:
        """One example per persona reply; ``thread`` is expected already scrubbed (ingest does)."""
        return turns.thread_examples(thread, persona, self.config, report, formatter=self.name, flat=True)

    def conversation(
        self, thread: Thread, persona: Persona, bot_user_id: str | None = None
    ) -> list[ChatMessage]:
        """Serving: the prompt messages for a live thread (scrubbed here, with the run's hooks)."""
        thread = scrub_live_thread(thread, self.context)
        return turns.thread_prompt(thread, persona, self.config, flat=True, bot_user_id=bot_user_id)

    def render_prompt(self, messages: Sequence[ChatMessage], tokenizer: Any) -> str:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        lines: list[str] = []
        for message in messages:
            if message.role == "user":
                lines.append(message.content)
            elif message.role == "assistant":  # only in message lists built elsewhere
                lines.extend(turns.split_reply(message.content))
        prompt = rendering.fill(self.config.template, system=system, input="\n".join(lines), response="")
        return rendering.bos_prefix(tokenizer) + prompt

    def render(self, example: Example, tokenizer: Any) -> Rendered:
        prompt = self.render_prompt(example.messages[:-1], tokenizer)
        return rendering.render_reply(
            prompt, example.response, tokenizer, train_on_inputs=self.config.train_on_inputs
        )
