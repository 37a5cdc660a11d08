"""Serving builds each persona's prompt with the formatter it was trained with."""

from __future__ import annotations

from pathlib import Path

from doppelkit.builtins.formatters.alpaca import AlpacaFormatter
from doppelkit.builtins.formatters.chat import ChatFormatter
from doppelkit.home import Home
from doppelkit.models import AdapterManifest
from doppelkit.testing import make_context
from doppelkit_lora.engine import LoraEngine


def manifest(formatter: str, config: dict) -> AdapterManifest:  # type: ignore[type-arg]
    return AdapterManifest(
        version="v1", team="T1", persona_id="U1", persona_name="maya", base_model="tiny",
        trainer="lora", formatter=formatter, formatter_config=config, template_hash="t",
        dataset_hash="d", doppelkit_version="0",
    )  # fmt: skip


def test_the_trained_formatter_serves_not_the_runs(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    run_formatter = ChatFormatter(ChatFormatter.Config(), context)
    engine = LoraEngine(Home.at(tmp_path), run_formatter, context=context)

    same = manifest("chat", ChatFormatter.Config().model_dump(mode="json"))
    assert engine._formatter_for(same) is run_formatter

    alpaca = engine._formatter_for(manifest("alpaca", AlpacaFormatter.Config().model_dump(mode="json")))
    assert isinstance(alpaca, AlpacaFormatter)

    custom = ChatFormatter.Config(system_prompt="You are {user}. Be brief.").model_dump(mode="json")
    served = engine._formatter_for(manifest("chat", custom))
    assert isinstance(served, ChatFormatter) and served is not run_formatter
    assert served.config.system_prompt == "You are {user}. Be brief."
    assert engine._formatter_for(manifest("chat", custom)) is served  # built once
