"""What every engine shares: each persona's prompt comes from the formatter it was trained with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from doppelkit.builtins.formatters.alpaca import AlpacaFormatter
from doppelkit.builtins.formatters.chat import ChatFormatter
from doppelkit.errors import PersonaError
from doppelkit.models import AdapterManifest, Message, Persona, Thread, User
from doppelkit.serving import GenerationConfig, PersonaFormatters, other_speakers, reply_cutter
from doppelkit.testing import make_context


def manifest(formatter: str, config: dict[str, Any]) -> AdapterManifest:
    return AdapterManifest(
        version="v1", team="T1", persona_id="U1", persona_name="maya", base_model="tiny",
        trainer="lora", formatter=formatter, formatter_config=config, template_hash="t",
        dataset_hash="d", doppelkit_version="0",
    )  # fmt: skip


def test_each_version_is_served_by_the_formatter_it_was_trained_with(tmp_path: Path) -> None:
    formatters = PersonaFormatters(make_context(tmp_path))
    chat = formatters.for_manifest(manifest("chat", ChatFormatter.Config().model_dump(mode="json")))
    assert isinstance(chat, ChatFormatter)
    alpaca = formatters.for_manifest(manifest("alpaca", AlpacaFormatter.Config().model_dump(mode="json")))
    assert isinstance(alpaca, AlpacaFormatter)
    custom = ChatFormatter.Config(system_prompt="You are {user}. Be brief.").model_dump(mode="json")
    served = formatters.for_manifest(manifest("chat", custom))
    assert isinstance(served, ChatFormatter) and served is not chat
    assert served.config.system_prompt == "You are {user}. Be brief."
    assert formatters.for_manifest(manifest("chat", custom)) is served, "built once"


def test_manifests_written_before_the_split_keys_moved_still_serve(tmp_path: Path) -> None:
    """Older manifests carry eval_fraction / session_gap_minutes in the formatter config."""
    old = {
        **ChatFormatter.Config().model_dump(mode="json"),
        "eval_fraction": 0.1,
        "session_gap_minutes": None,
    }
    assert isinstance(
        PersonaFormatters(make_context(tmp_path)).for_manifest(manifest("chat", old)), ChatFormatter
    )


def test_a_formatter_that_is_not_installed_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="formatter 'discord_style', which is not installed"):
        PersonaFormatters(make_context(tmp_path)).for_manifest(manifest("discord_style", {}))


def test_a_config_this_version_cannot_read_says_retrain(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="retrain it"):
        PersonaFormatters(make_context(tmp_path)).for_manifest(manifest("chat", {"min_length": "lots"}))


def test_a_reply_ends_where_someone_else_would_speak() -> None:
    maya = Persona(team="T1", user=User(id="U1", display_name="maya"))
    thread = Thread(
        team="T1",
        channel="C1",
        ts="1.0",
        messages=[Message(ts="1.0", user="U2", text="hi <@U3>"), Message(ts="2.0", user="U1", text="hey")],
        user_labels={"U2": "Ann", "U1": "maya", "U3": "Bob"},
    )
    assert other_speakers(thread, maya, bot_user_id="UBOT") == {"Ann", "Bob"}
    cutter = reply_cutter(GenerationConfig(stop=["###"]), thread, maya, "UBOT")
    assert cutter.update("maya: sure thing\nAnn: thanks", finished=True).text == "sure thing"
    assert cutter.update("on it ### ignored", finished=True).text == "on it"
