"""Small Slack exports for the FakeSlack and ``slack`` source tests (built in tmp_path)."""

from __future__ import annotations

import time
from pathlib import Path

from slack_export_builders import channel, message, write_export

ROOT = "1704100000.000100"
ROOT2 = "1704100500.000100"


def fake_export(root: Path) -> Path:
    """Two public channels (one archived), a private channel, a DM; threads spanning days."""
    general = [
        message("1704099000.000100", "U1ANN", "", subtype="channel_join"),
        message(ROOT, "U1ANN", "root one", thread_ts=ROOT, reply_count=3),
        message("1704100100.000100", "U2BOB", "reply a", thread_ts=ROOT),
        message(
            "1704100200.000100",
            "U1ANN",
            "reply b, also in channel",
            thread_ts=ROOT,
            subtype="thread_broadcast",
        ),
        message(ROOT2, "U2BOB", "lonely top-level"),
    ]
    general += [message(f"17041010{i:02d}.000100", "U1ANN", f"chatter {i}") for i in range(20)]
    return write_export(
        root,
        {
            "general/2024-01-01.json": general,
            "general/2024-01-02.json": [
                message("1704200000.000100", "U2BOB", "reply c, a day later", thread_ts=ROOT),
                # a reply whose root was deleted before the export
                message("1704200100.000100", "U2BOB", "orphan reply", thread_ts="1704000000.000100"),
            ],
            "old/2023-01-01.json": [message("1672531200.000100", "U1ANN", "archived words")],
            "secret/2024-01-01.json": [message("1704100000.000200", "U1ANN", "CONFIDENTIAL plans")],
            "D0ANNBOB01/2024-01-01.json": [message("1704100000.000300", "U1ANN", "SECRET dm")],
        },
        channels=[
            {**channel("C1GEN", "general"), "members": ["U1ANN", "U2BOB"]},
            {**channel("C2OLD", "old"), "is_archived": True},
        ],
        top={
            "groups.json": [{**channel("G1SEC", "secret"), "members": ["U1ANN"]}],
            "dms.json": [{"id": "D0ANNBOB01", "created": 1, "members": ["U1ANN", "U2BOB"]}],
        },
    )


def recent_export(root: Path, *, threads: int = 8, replies: int = 3, days_ago: float = 2.0) -> Path:
    """``threads`` threads of ``replies`` replies each, started ``days_ago`` days ago, plus one
    thread from long ago (400 days): for cutoff and concurrency tests."""
    now = time.time()

    def ts(seconds_ago: float) -> str:
        return f"{now - seconds_ago:.6f}"

    messages = []
    old_root = ts(400 * 86_400)
    messages += [
        message(old_root, "U2BOB", "an old question", thread_ts=old_root),
        message(ts(400 * 86_400 - 60), "U1ANN", "an old answer", thread_ts=old_root),
    ]
    for i in range(threads):
        thread_root = ts(days_ago * 86_400 - i * 600)
        messages.append(message(thread_root, "U2BOB", f"question {i}?", thread_ts=thread_root))
        messages += [
            message(
                ts(days_ago * 86_400 - i * 600 - 10 * (r + 1)),
                "U1ANN",
                f"answer {i}.{r}",
                thread_ts=thread_root,
            )
            for r in range(replies)
        ]
    return write_export(root, {"general/2024-01-01.json": messages}, channels=[channel("C1GEN", "general")])
