"""The example plugin passes the source contract and behaves like a built-in end to end."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from doppelkit.errors import InputDataError
from doppelkit.interfaces import RunContext
from doppelkit.models import DatasetReport
from doppelkit.testing import run_cli
from doppelkit.testing.contracts import SourceContract
from doppelkit_jsonl import JsonlSource


class TestJsonlSourceContract(SourceContract):
    @pytest.fixture
    def source(self, chats: Path, run_context: RunContext) -> JsonlSource:
        return JsonlSource(JsonlSource.Config(path=chats), run_context)


def test_bad_lines_are_skipped_and_reported(chats: Path, run_context: RunContext) -> None:
    report = DatasetReport()
    threads = list(JsonlSource(JsonlSource.Config(path=chats), run_context).threads(report))
    assert [t.ts for t in threads] == ["1700000000.000000", "1700001000.000000"]
    assert len(report.skipped_files) == 1 and report.skipped_files[0].path.endswith(":3")


def test_missing_file_is_a_clear_error(tmp_path: Path, run_context: RunContext) -> None:
    source = JsonlSource(JsonlSource.Config(path=tmp_path / "nope.jsonl"), run_context)
    with pytest.raises(InputDataError, match="not a file"):
        source.workspace()


def test_discovered_through_its_entry_point() -> None:
    dist = importlib.metadata.distribution("doppelkit-jsonl")
    eps = [ep for ep in dist.entry_points if ep.group == "doppelkit"]
    assert [(ep.name, ep.value) for ep in eps] == [("jsonl", "doppelkit_jsonl")]
    listing = run_cli(["plugins", "--json"])
    assert listing.returncode == 0, listing.stderr
    plugin = next(p for p in json.loads(listing.stdout)["plugins"] if p["name"] == "jsonl")
    assert plugin["distribution"] == "doppelkit-jsonl"
    assert plugin["registers"] == {"source": ["jsonl"]}


def test_config_group_comes_from_pydantic_defaults(chats: Path) -> None:
    # No YAML ships with the plugin: `source=jsonl` composes from the pydantic Config.
    shown = run_cli(["--cfg", "job", "source=jsonl", f"source.path={chats}"])
    assert shown.returncode == 0, shown.stderr
    assert "name: jsonl" in shown.stdout and "team: local" in shown.stdout


def test_validated_like_a_builtin(chats: Path, tmp_path: Path) -> None:
    ok = run_cli(["validate", "source=jsonl", f"source.path={chats}", f"home={tmp_path}"])
    assert ok.returncode == 0, ok.stderr
    assert "source=jsonl" in ok.stderr

    missing = run_cli(["validate", "source=jsonl", f"home={tmp_path}"])
    assert missing.returncode == 2
    assert "source.path: required" in missing.stderr
    assert "Traceback" not in missing.stderr

    typo = run_cli(["validate", "source=jsonl", f"source.path={chats}", "+source.teem=x", f"home={tmp_path}"])
    assert typo.returncode == 2
    assert "source.teem" in typo.stderr and "did you mean source.team?" in typo.stderr


def test_ingest_from_the_cli(chats: Path, tmp_path: Path) -> None:
    out = tmp_path / "bob.jsonl"
    result = run_cli(
        [
            "ingest",
            "source=jsonl",
            f"source.path={chats}",
            "persona.user=bob",
            f"dataset.path={out}",
            f"home={tmp_path / 'home'}",
            "formatter.min_length=10",
            "dataset.eval_fraction=0",
        ]
    )
    assert result.returncode == 0, result.stderr
    examples = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(examples) == 3
    responses = [ex["messages"][-1]["content"] for ex in examples]
    assert any("--no-lock" in r for r in responses)
    assert all(ex["messages"][-1]["role"] == "assistant" for ex in examples)
    report = json.loads(out.with_name("bob.report.json").read_text())
    assert report["source"] == "jsonl" and report["examples_kept"] == 3


DISCORD = [
    {
        "channel": "1098765432109876000",
        "messages": [
            {
                "user": "301122334455667788",
                "name": "ana",
                "text": "the bot crashed on startup again",
                "ts": 1,
            },
            {
                "user": "409988776655443322",
                "name": "ben",
                "text": "restarting it now, give me a minute",
                "ts": 2,
            },
            {"user": "301122334455667788", "name": "ana", "text": "thanks! it was the token expiry", "ts": 3},
        ],
    }
]


@pytest.fixture
def discord_chats(tmp_path: Path) -> Path:
    path = tmp_path / "discord.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in DISCORD), encoding="utf-8")
    return path


def test_a_shipped_preset_composes_like_a_builtin(discord_chats: Path) -> None:
    shown = run_cli(["--cfg", "job", "source=jsonl_discord", f"source.path={discord_chats}"])
    assert shown.returncode == 0, shown.stderr
    assert "name: jsonl" in shown.stdout and "platform: Discord" in shown.stdout
    typo = run_cli(["validate", "source=jsonl_discrod"])
    assert typo.returncode == 2 and "Did you mean 'jsonl_discord'?" in typo.stderr


def test_all_digit_ids_from_the_command_line(discord_chats: Path, tmp_path: Path) -> None:
    out = tmp_path / "ana.jsonl"
    result = run_cli(
        [
            "ingest",
            "source=jsonl_discord",
            f"source.path={discord_chats}",
            "source.team=1098765432109876543",
            "persona.user=301122334455667788",
            f"dataset.path={out}",
            f"home={tmp_path / 'home'}",
            "formatter.min_length=10",
            "dataset.eval_fraction=0",
        ]
    )
    assert result.returncode == 0, result.stderr
    examples = [json.loads(line) for line in out.read_text().splitlines()]
    replies = [ex["messages"][-1]["content"] for ex in examples]
    assert replies == ["the bot crashed on startup again", "thanks! it was the token expiry"]
    assert "your company's Discord" in examples[0]["messages"][0]["content"]
    report = json.loads(out.with_name("ana.report.json").read_text())
    assert (report["team"], report["persona_id"], report["platform"]) == (
        "1098765432109876543",
        "301122334455667788",
        "Discord",
    )


def test_a_bad_timestamp_is_one_line_naming_the_source(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"user": "ana", "text": "hi", "ts": "yesterday"}]}) + "\n")
    result = run_cli(["ingest", "source=jsonl", f"source.path={bad}", "persona.user=ana", f"home={tmp_path}"])
    assert result.returncode == 2
    assert "source=jsonl gave an invalid Message: ts: ts must be epoch seconds" in result.stderr
    assert "Traceback" not in result.stderr
