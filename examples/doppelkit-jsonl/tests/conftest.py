import json
from pathlib import Path

import pytest

CONVERSATIONS = [
    {
        "id": "c1",
        "channel": "general",
        "messages": [
            {"user": "alice", "text": "anyone tried the new espresso machine on three?", "ts": 1700000000.0},
            {
                "user": "bob",
                "text": "yes!! it makes a proper flat white, finally. ten out of ten",
                "ts": 1700000060.5,
            },
            {"user": "alice", "text": "ok that settles it, moving desks", "ts": 1700000120.0},
            {
                "user": "bob",
                "text": "bring snacks and you can have the window seat, deal?",
                "ts": 1700000180.0,
            },
        ],
    },
    {
        "id": "c2",
        "channel": "eng",
        "messages": [
            {"user": "carol", "text": "deploy is stuck on the migration step again", "ts": 1700001000.0},
            {
                "user": "bob",
                "text": "rerun it with --no-lock, the lock table is stale since friday",
                "ts": 1700001030.0,
            },
        ],
    },
]


@pytest.fixture
def chats(tmp_path: Path) -> Path:
    path = tmp_path / "chats.jsonl"
    lines = [json.dumps(c) for c in CONVERSATIONS] + ["{not json"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
