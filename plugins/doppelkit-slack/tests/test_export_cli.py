"""``doppelkit ingest source=slack_export …`` end to end, through the real CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from slack_export_builders import USERS, channel, message, user, write_export, zip_dir

from doppelkit.testing import run_cli
from doppelkit_slack.sources.export import SAMPLE_WORKSPACE

# Only this distribution's plugins: the test does not depend on other plugins' state.
ENV = {"DOPPELKIT_LOAD_PLUGINS": "slack"}


def ingest(tmp_path: Path, *overrides: str) -> tuple[int, str, Path]:
    out = tmp_path / "out" / "maya.jsonl"
    result = run_cli(
        ["ingest", "source=slack_export", f"dataset.path={out}", f"home={tmp_path / 'home'}", *overrides],
        cwd=tmp_path,
        env=ENV,
        timeout=120,
    )
    return result.returncode, result.stdout + result.stderr, out


def test_ingest_the_sample_zip(tmp_path: Path) -> None:
    code, output, out = ingest(tmp_path, f"source.path={SAMPLE_WORKSPACE}", "persona.user=maya")
    assert code == 0, output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 300
    for line in lines:
        example = json.loads(line)
        assert example["messages"][-1]["role"] == "assistant"
        assert example["meta"]["team"] == "T0LANTERN1"
    dataset = out.read_text(encoding="utf-8")
    assert "SECRET-" not in dataset and "CONFIDENTIAL-" not in dataset
    report = json.loads(out.with_name("maya.report.json").read_text(encoding="utf-8"))
    assert report["persona_id"] == "U0MAYA0001"
    assert report["drops"]["private_channel"] == 1 and report["drops"]["direct_message"] == 2
    assert report["drops"]["channel_join"] > 0
    assert "examples kept" in output


def test_a_persona_without_messages_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    export = write_export(
        tmp_path / "export",
        {"general/2024-01-01.json": [message("1704100000.000100", "U1ANN", "ann talks, nobody else")]},
        users=[*USERS, user("U4QUIET", "quiet")],
    )
    code, output, out = ingest(tmp_path, f"source.path={export}", "persona.user=quiet")
    assert code == 2, output
    assert "no usable messages" in output and "Traceback" not in output
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_bad_exports_exit_2_without_a_traceback(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", {"general/2024-01-01.json": [message("1.0", "U1ANN", "hi")]})
    archive = zip_dir(export, tmp_path / "slip.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../../evil.json", "[]")
    for path, expected in ((archive, "Refusing"), (tmp_path / "missing.zip", "does not exist")):
        code, output, out = ingest(tmp_path, f"source.path={path}", "persona.user=ann")
        assert code == 2, output
        assert expected in output and "Traceback" not in output
        assert not out.exists()


def test_a_corrupt_day_file_is_reported_and_ingest_goes_on(tmp_path: Path) -> None:
    root = "1704100000.000100"
    export = write_export(
        tmp_path / "export",
        {
            "general/2024-01-01.json": [
                message(root, "U2BOB", "how do we feel about the new bike racks?", thread_ts=root),
                message(
                    "1704100100.000100", "U1ANN", "honestly they are great, my bike fits now", thread_ts=root
                ),
            ],
            "general/2024-01-02.json": b"\xff\xfe not json and not utf-8",
        },
    )
    code, output, out = ingest(tmp_path, f"source.path={export}", "persona.user=ann")
    assert code == 0, output
    report = json.loads(out.with_name("maya.report.json").read_text(encoding="utf-8"))
    assert [s["path"] for s in report["skipped_files"]] == ["general/2024-01-02.json"]
    assert report["examples_kept"] == 1


def test_a_users_json_id_that_is_not_a_slack_id_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path,
) -> None:
    """Issue 11, class 10: an ID with '/' or '..' would become a path under home."""
    people = [user("U1ANN", "ann"), user("U2/BOB", "bob"), user("../../evil", "evil")]
    words = "a message long enough to be an example, about the quarterly planning"
    export = write_export(
        tmp_path / "export",
        {
            "general/2024-01-01.json": [
                message("1704100000.000100", "U1ANN", f"ann: {words}"),
                message("1704100100.000100", "U2/BOB", f"bob: {words}"),
                message("1704100200.000100", "../../evil", f"evil: {words} <@U2/BOB>"),
            ]
        },
        users=people,
    )
    home = tmp_path / "home"
    for who in ("bob", "evil", "U2/BOB"):
        result = run_cli(
            ["ingest", f"source.path={export}", f"persona.user={who}", f"home={home}"],
            cwd=tmp_path,
            env=ENV,
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
        assert "not a valid" in output and "users.json" in output, output
        assert not home.exists() or [p for p in home.rglob("*") if p.is_file()] == []
    # The people with sound IDs are unaffected.
    code, output, _ = ingest(tmp_path, f"source.path={export}", "persona.user=ann")
    assert code == 0, output


def no_examples_output(tmp_path: Path, persona_messages: list[dict[str, object]], persona: str) -> str:
    """What `doppelkit ingest` says (exit 2) when the persona has nothing to learn from."""
    root = "1704100000.000100"
    words = "a message long enough to be an example for anyone who writes it"
    chatter = [
        message(root, "U1ANN", f"ann asks: {words}?", thread_ts=root),
        *[
            message(f"17041001{i:02d}.000100", "U2BOB", f"bob answers {i}: {words}", thread_ts=root)
            for i in range(5)
        ],
        message("1704100900.000100", "U1ANN", f"ann again: {words}"),
        message("1704101000.000100", "U1ANN", "<@U1ANN> has joined the channel", subtype="channel_join"),
        message("1704101100.000100", "U2BOB", "<@U2BOB> has joined the channel", subtype="channel_join"),
    ]
    export = write_export(
        tmp_path / "export",
        {"general/2024-01-01.json": chatter, "random/2024-01-01.json": persona_messages},
        users=[*USERS, user("U4QUIET", "quiet")],
        channels=[channel("C1GEN", "general"), channel("C2RND", "random")],
    )
    code, output, out = ingest(tmp_path, f"source.path={export}", f"persona.user={persona}")
    assert code == 2, output
    assert "no usable messages" in output and "Traceback" not in output
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    return " ".join(output.split())


def test_no_usable_messages_when_the_persona_wrote_nothing_names_who_did(tmp_path: Path) -> None:
    """Issue 11, class 8: no min_length advice for someone who wrote nothing; their counts, not
    the workspace's; who wrote the most instead."""
    output = no_examples_output(tmp_path, [message("1704200000.000100", "U1ANN", "only ann here")], "quiet")
    assert "min_length" not in output
    assert "wrote no message" in output and "2 public channels" in output
    assert "private channels" in output and "source.include_private=true" in output
    assert "bob (U2BOB, 5 messages)" in output and "ann (U1ANN, 3 messages)" in output
    assert output.index("bob (U2BOB") < output.index("ann (U1ANN")
    assert "channel_join" not in output  # other people's drops are not the persona's story


def test_no_usable_messages_when_every_reply_is_short_suggests_min_length(tmp_path: Path) -> None:
    short = [
        message(f"170420000{i}.000100", "U4QUIET", word) for i, word in enumerate(["ok", "sure", "lgtm!"])
    ]
    output = no_examples_output(tmp_path, short, "quiet")
    assert "wrote 3 messages" in output and "too short: 3" in output
    assert "formatter.min_length=40" in output and "lower" in output


def test_no_usable_messages_when_the_persona_only_uploaded_files(tmp_path: Path) -> None:
    uploads = [
        message("1704200000.000100", "U4QUIET", "", subtype="file_share", files=[{"id": "F1"}]),
        message("1704200100.000100", "U4QUIET", "", files=[{"id": "F2"}], upload=True),
    ]
    output = no_examples_output(tmp_path, uploads, "quiet")
    assert "wrote 2 messages" in output and "no words: 2" in output
    assert "min_length" not in output


def test_half_an_emoji_in_a_day_file_is_dropped_not_a_crash(tmp_path: Path) -> None:
    # Slack's truncation can cut an emoji's UTF-16 pair in half: the day file then holds a lone
    # surrogate escape, which json accepts but no UTF-8 file can hold.
    thread = [
        message("1704100000.000100", "U2BOB", "is the deploy out?", thread_ts="1704100000.000100"),
        message("1704100000.000200", "U1ANN", "yes it is SMILE", thread_ts="1704100000.000100"),
    ]
    export = write_export(tmp_path / "export", {"general/2024-01-01.json": "[]"})
    raw = json.dumps(thread).replace("SMILE", "\\ud83d done")
    (export / "general" / "2024-01-01.json").write_text(raw, encoding="utf-8")
    code, output, out = ingest(
        tmp_path, f"source.path={export}", "persona.user=ann", "formatter.min_length=1"
    )
    assert code == 0, output
    replies = [json.loads(line)["messages"][-1]["content"] for line in out.read_text("utf-8").splitlines()]
    assert replies == ["yes it is  done"]
