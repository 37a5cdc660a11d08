"""The ``chat`` formatter (default): OpenAI-style turns rendered with the model's chat template.

Examples are ``[system, user, assistant, user, …, assistant]``: the system prompt names the
persona, user turns are other people (``Name: text`` lines), assistant turns are the persona.
The prompt text comes from the tokenizer's own chat template (or ``formatter.chat_template``),
and from :data:`FALLBACK_CHAT_TEMPLATE` when the model has none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from jinja2 import TemplateError
from pydantic import Field

from doppelkit.builtins.formatters import rendering, turns
from doppelkit.builtins.formatters.live import scrub_live_thread
from doppelkit.builtins.formatters.options import ThreadOptions
from doppelkit.interfaces import Rendered, RunContext
from doppelkit.models import ChatMessage, DatasetReport, Example, Persona, Thread

# Used only when neither the tokenizer nor formatter.chat_template provides a template. Each
# turn ends with the EOS token, as the trained reply does, so the context looks like what the
# model learns to write. doppelkit writes the tokenizer's BOS in front when it adds one.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message.role }}|>\n{{ message.content }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

CHAT_SYSTEM_PROMPT = (
    "You are {user}, chatting with your colleagues in your company's {platform}. Each of their "
    "messages starts with the sender's name. Reply as {user} would."
)


class ChatFormatter:
    """Multi-turn chat examples; prompts from the model's chat template."""

    name: ClassVar[str] = "chat"

    class Config(ThreadOptions):
        system_prompt: str = Field(
            CHAT_SYSTEM_PROMPT, description="names the persona; {user}, {channel}, {platform}"
        )
        chat_template: str | None = Field(
            None,
            description="a Jinja chat template (Hugging Face semantics) used instead of the "
            "tokenizer's own; null = the tokenizer's, else doppelkit's fallback",
        )

    def __init__(self, config: Config, context: RunContext) -> None:
        self.config = config
        self.context = context

    def examples(self, thread: Thread, persona: Persona, report: DatasetReport) -> Iterator[Example]:
        """One example per persona reply; ``thread`` is expected already scrubbed (ingest does)."""
        return turns.thread_examples(thread, persona, self.config, report, formatter=self.name)

    def conversation(
        self, thread: Thread, persona: Persona, bot_user_id: str | None = None
    ) -> list[ChatMessage]:
        """Serving: the prompt messages for a live thread (scrubbed here, with the run's hooks)."""
        thread = scrub_live_thread(thread, self.context)
        return turns.thread_prompt(thread, persona, self.config, bot_user_id=bot_user_id)

    def render_prompt(self, messages: Sequence[ChatMessage], tokenizer: Any) -> str:
        template = self.config.chat_template or getattr(tokenizer, "chat_template", None)
        if not template:
            values = {
                "messages": [m.model_dump() for m in messages],
                "eos_token": rendering.eos_token(tokenizer),
                "add_generation_prompt": True,
            }
            return rendering.bos_prefix(tokenizer) + rendering.fill(FALLBACK_CHAT_TEMPLATE, **values)
        return apply_chat_template(tokenizer, messages, self.config.chat_template)

    def render(self, example: Example, tokenizer: Any) -> Rendered:
        prompt = self.render_prompt(example.messages[:-1], tokenizer)
        return rendering.render_reply(
            prompt, example.response, tokenizer, train_on_inputs=self.config.train_on_inputs
        )


def apply_chat_template(tokenizer: Any, messages: Sequence[ChatMessage], template: str | None) -> str:
    """The tokenizer's ``apply_chat_template`` as text, ending with the assistant header.

    Some templates (Gemma's) refuse a system turn; then the system prompt is folded into the
    first user turn, the usual workaround for such models.
    """
    dicts = [m.model_dump() for m in messages]
    try:
        return str(
            tokenizer.apply_chat_template(
                dicts, chat_template=template, tokenize=False, add_generation_prompt=True
            )
        )
    except TemplateError:
        if len(dicts) < 2 or dicts[0]["role"] != "system" or dicts[1]["role"] != "user":
            raise
        merged = {"role": "user", "content": dicts[0]["content"] + "\n\n" + dicts[1]["content"]}
        return str(
            tokenizer.apply_chat_template(
                [merged, *dicts[2:]], chat_template=template, tokenize=False, add_generation_prompt=True
            )
        )
