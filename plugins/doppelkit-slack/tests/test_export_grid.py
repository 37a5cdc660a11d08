"""Enterprise Grid exports (issue 11, class 4): ``org_users.json`` instead of ``users.json``,
``W…`` user IDs, several workspaces in one export; ``persona.team`` picks one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from slack_export_builders import message, write_export

from doppelkit.testing import run_cli

ORG = "E0ACME001"
T_ENG, T_SALES = "T0ENG0001", "T0SALES01"
ENV = {"DOPPELKIT_LOAD_PLUGINS": "slack"}
WORDS = "a message long enough to become an example in the dataset"


def org_user(user_id: str, name: str, teams: list[str]) -> dict[str, Any]:
    return {
        "id": user_id,
        "team_id": teams[0],
        "name": name,
        "real_name": name.title(),
        "profile": {"display_name": name, "real_name": name.title(), "team": teams[0]},
        "enterprise_user": {"id": user_id, "enterprise_id": ORG, "enterprise_name": "Acme", "teams": teams},
    }


def grid_export(root: Path) -> Path:
    """Ann is in both workspaces, Bob in engineering, Cat in sales; #general belongs to
    engineering, #deals to sales, #announce to the whole org."""

    def thread(ts: str, channel: str) -> list[dict[str, Any]]:
        return [
            message(
                ts,
                "W0CAT0001" if channel == "deals" else "W0BOB0001",
                f"question in {channel}?",
                thread_ts=ts,
            ),
            message(ts[:-6] + "000200", "W0ANN0001", f"ann in {channel}: {WORDS}", thread_ts=ts),
            message(
                ts[:-6] + "000300",
                "W0BOB0001" if channel != "deals" else "W0CAT0001",
                f"{channel} says: {WORDS}",
                thread_ts=ts,
            ),
        ]

    return write_export(
        root,
        {
            "general/2024-01-01.json": thread("1704100000.000100", "general"),
            "deals/2024-01-01.json": thread("1704200000.000100", "deals"),
            "announce/2024-01-01.json": thread("1704300000.000100", "announce"),
        },
        users=None,
        channels=[
            {"id": "C0GEN0001", "name": "general", "context_team_id": T_ENG, "internal_team_ids": [T_ENG]},
            {"id": "C0DEALS01", "name": "deals", "context_team_id": T_SALES, "internal_team_ids": [T_SALES]},
            {"id": "C0ANN0001", "name": "announce", "internal_team_ids": [T_ENG, T_SALES]},
        ],
        top={
            "users.json": None,
            "org_users.json": [
                org_user("W0ANN0001", "ann", [T_ENG, T_SALES]),
                org_user("W0BOB0001", "bob", [T_ENG]),
                org_user("W0CAT0001", "cat", [T_SALES]),
            ],
        },
    )  # fmt: skip


def ingest(tmp_path: Path, export: Path, *overrides: str) -> tuple[int, str, Path]:
    out = tmp_path / "out" / "dataset.jsonl"
    result = run_cli(
        ["ingest", f"source.path={export}", f"home={tmp_path / 'home'}", f"dataset.path={out}",
         "dataset.eval_fraction=0", "formatter.min_length=1", *overrides],
        cwd=tmp_path,
        env=ENV,
        timeout=120,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr, out


def channels_of(out: Path) -> list[str]:
    return sorted({json.loads(line)["meta"]["channel_name"] for line in out.read_text().splitlines()})


def test_a_grid_export_is_read_and_a_persona_in_one_workspace_needs_no_team(tmp_path: Path) -> None:
    code, output, out = ingest(tmp_path, grid_export(tmp_path / "export"), "persona.user=bob")
    assert code == 0, output
    assert channels_of(out) == ["announce", "general"]  # engineering's channels and the org's
    report = json.loads(out.with_name("dataset.report.json").read_text())
    assert (report["team"], report["persona_id"]) == (T_ENG, "W0BOB0001")
    assert report["drops"]["other_workspace_channel"] == 1


def test_persona_team_picks_the_workspace(tmp_path: Path) -> None:
    export = grid_export(tmp_path / "export")
    code, output, out = ingest(tmp_path, export, "persona.user=ann", f"persona.team={T_SALES}")
    assert code == 0, output
    assert channels_of(out) == ["announce", "deals"]
    assert json.loads(out.with_name("dataset.report.json").read_text())["team"] == T_SALES


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["persona.user=ann"], f"ann is in {T_ENG} and {T_SALES}: set persona.team"),
        (["persona.user=ann", "persona.team=T0NOPE001"], "persona.team='T0NOPE001' is not one of"),
    ],
)
def test_several_workspaces_and_no_choice_is_one_line(
    tmp_path: Path, overrides: list[str], expected: str
) -> None:
    code, output, out = ingest(tmp_path, grid_export(tmp_path / "export"), *overrides)
    assert code == 2, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert expected in output and f"{T_ENG} (2 members)" in output and f"{T_SALES} (2 members)" in output
    assert not out.exists()
