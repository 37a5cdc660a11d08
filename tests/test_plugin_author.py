"""What a plugin author writing a non-Slack source tripped over: all-digit IDs, timestamps in
the wrong format, and a system prompt that named Slack whatever the source was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from doppelkit.config import RunConfig, Selection, compose, validate
from doppelkit.errors import InputDataError
from doppelkit.interfaces import RunContext
from doppelkit.models import ID, AdapterManifest, DatasetReport, Message, SafeID, Thread, User, Workspace
from doppelkit.pipeline import ingest
from doppelkit.plugins import build_registries, get_plugin_manager
from doppelkit.serving import as_trained
from doppelkit.settings import Settings
from doppelkit.testing.samples import message
from doppelkit.testing.workspaces import ingest_config

DISCORD_USER = "301122334455667788"
WORKSPACE = Workspace(
    team="1098765432109876543", users=[User(id=DISCORD_USER, name="ana"), User(id="7", name="bo")]
)


def thread(i: int) -> Thread:
    ts = f"{1000 * i:.6f}"
    return Thread(
        team=WORKSPACE.team,
        channel="42",
        channel_name="general",
        ts=ts,
        messages=[
            message(1000 * i, "7", f"question {i}: anyone seen the build?", thread_ts=ts),
            message(
                1000 * i + 1, DISCORD_USER, f"yes, it is green again after the fix number {i}", thread_ts=ts
            ),
        ],
    )


@pytest.mark.parametrize("key", ["persona.user", "persona.team"])
def test_all_digit_ids_are_ids(key: str, tmp_path: Path) -> None:
    registries = build_registries(get_plugin_manager())
    run = validate(compose([f"home={tmp_path}", f"{key}={DISCORD_USER}"], registries), registries)
    section, field = key.split(".")
    assert getattr(getattr(run.settings, section), field) == DISCORD_USER


def test_a_plugins_id_fields_take_digits_too() -> None:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        server: ID
        team: SafeID

    config = Config.model_validate({"server": 301122334455667788, "team": 1098765432109876543})
    assert (config.server, config.team) == (DISCORD_USER, "1098765432109876543")
    with pytest.raises(ValueError, match="not a valid ID"):
        Config.model_validate({"server": 1, "team": "../etc"})


def test_a_persona_with_an_all_digit_id_is_ingested_by_id(run_context: RunContext) -> None:
    run = ingest_config(run_context.home.root, WORKSPACE, [thread(i) for i in range(6)], DISCORD_USER)
    result = ingest(run, run_context)
    assert result.persona.id == DISCORD_USER and result.report.examples_kept == 6


def test_the_system_prompt_names_the_sources_platform(run_context: RunContext) -> None:
    threads = [thread(i) for i in range(4)]
    run = ingest_config(run_context.home.root, WORKSPACE, threads, "ana", platform="Discord")
    result = ingest(run, run_context)
    system = Path(result.paths.train).read_text().splitlines()[0]
    assert "your company's Discord" in system and "Slack" not in system
    assert result.report.platform == "Discord"


def test_a_source_that_does_not_say_reads_as_team_chat(run_context: RunContext) -> None:
    run = ingest_config(run_context.home.root, WORKSPACE, [thread(i) for i in range(4)], "ana")
    system = Path(ingest(run, run_context).paths.train).read_text().splitlines()[0]
    assert "your company's team chat" in system


def test_serving_names_the_platform_the_persona_was_trained_on() -> None:
    manifest = AdapterManifest(
        version="v1", team="T1", persona_id="U1", persona_name="ana", base_model="tiny", trainer="lora",
        formatter="chat", template_hash="t", dataset_hash="d", doppelkit_version="0", platform="Discord",
    )  # fmt: skip
    live = thread(1)  # a frontend's thread knows no platform
    assert as_trained(live, manifest).platform == "Discord"
    older = manifest.model_copy(update={"platform": None})  # trained before platforms were recorded
    assert as_trained(live, older).platform == "Slack"


class YesterdaySource:
    """A source that writes timestamps its own way."""

    name: ClassVar[str] = "yesterday"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Any, context: RunContext) -> None:
        pass

    def workspace(self) -> Workspace:
        return WORKSPACE

    def threads(self, report: DatasetReport) -> Iterator[Thread]:
        yield thread(1)
        when = "yesterday"
        yield Thread(
            team=WORKSPACE.team, channel="42", ts="5.0", messages=[Message(ts=when, user="7", text="hi")]
        )


def test_a_bad_ts_names_the_source_and_the_value(run_context: RunContext) -> None:
    from doppelkit.builtins.formatters import ChatFormatter

    settings = Settings(home=run_context.home.root, persona={"user": "ana"})
    run = RunConfig(
        settings=settings,
        selections={
            "source": Selection("source", "yesterday", YesterdaySource, YesterdaySource.Config(), "test"),
            "formatter": Selection("formatter", "chat", ChatFormatter, ChatFormatter.Config(), "test"),
        },
    )
    with pytest.raises(InputDataError) as raised:
        ingest(run, run_context)
    text = str(raised.value)
    assert text.startswith("source=yesterday gave an invalid Message: ts: ts must be epoch seconds")
    assert "(got 'yesterday')" in text and "\n" not in text
    assert not list(run_context.home.root.glob("datasets/*/*/dataset.jsonl")), "nothing half-written"
