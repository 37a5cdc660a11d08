"""Config keys shared by the built-in formatters (``formatter.*``); defaults live here."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Placeholders a system prompt may use: the persona's name, the channel's name, and the chat
# platform the conversations come from ("Slack"; the source says, see Thread.platform).
SYSTEM_PROMPT_FIELDS = ("user", "channel", "platform")


def fill_system_prompt(template: str, user: str, channel: str, platform: str = "") -> str:
    """``template`` with ``{user}``, ``{channel}`` and ``{platform}`` filled in (format-string
    syntax); an unknown platform reads as "team chat"."""
    return template.format(user=user, channel=channel, platform=platform or DEFAULT_PLATFORM)


DEFAULT_PLATFORM = "team chat"


class ThreadOptions(BaseModel):
    """How threads become examples: what counts as a reply, how much context it gets."""

    model_config = ConfigDict(extra="forbid")

    min_length: int = Field(
        40, ge=0, description="a persona reply (its messages joined) needs this many characters"
    )
    max_context_chars: int = Field(
        2000, ge=0, description="context budget: characters of earlier messages (most recent kept)"
    )
    max_context_messages: int = Field(
        20, ge=0, description="context budget: number of earlier messages (most recent kept)"
    )
    train_on_inputs: bool = Field(False, description="also take loss on the prompt, not just the reply")
    include_bots: bool = Field(
        False, description="keep other bots' messages as context (never as the persona's replies)"
    )
    empty_context_text: str = Field(
        "(new conversation)",
        description="the user turn standing in for 'nobody spoke before' (the persona opened the thread)",
    )
    system_prompt: str = Field(
        "", description="names the persona; placeholders {user}, {channel}, {platform}"
    )

    @field_validator("system_prompt")
    @classmethod
    def _placeholders_are_known(cls, value: str) -> str:
        try:
            fill_system_prompt(value, user="x", channel="y", platform="z")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"bad placeholder {exc} in system_prompt; available: "
                + ", ".join("{" + f + "}" for f in SYSTEM_PROMPT_FIELDS)
                + " (write {{ and }} for literal braces)"
            ) from None
        return value
