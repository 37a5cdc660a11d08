"""Generate large synthetic Slack exports (for benchmarks and load tests).

    python -m doppelkit_slack.testing.synthetic OUT_DIR --messages 1000000 [--channels 20]
    python -m doppelkit_slack.testing.synthetic OUT_DIR --messages 1000000 --channels 40 \
        --compact --thread-sizes 1-12 --persona-share 0.12 --secret-share 0.002

Messages have the shape of a modern export (``client_msg_id``, ``user_profile``, rich-text
``blocks``, 4-space indented JSON as Slack writes it, or compact JSON with ``--compact``);
by default about a third of top-level messages start a thread of 2–9 messages whose replies
can land in later day files (``--thread-sizes 1-12``: every top-level message starts a thread
of 1 to 12 messages, evenly), and a few percent are joins, bot posts, edits and file shares.
``--persona-share`` makes one person (:data:`PERSONA`) write that share of the people's
messages; ``--secret-share`` plants a secret or an email (the kinds the built-in scrubbers
find, see :data:`PLANTED`) in that share of messages. Text is random words, not prose: this is
for measuring speed and memory, not for training. Generation streams one channel at a time.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEAM = "T0SYNTH001"
START = 1_700_000_000  # seconds
_VOCABULARY = (
    "deploy queue shard courier parcel route map cache index retry timeout review merge branch lunch "
    "coffee bike rain build flaky test ticket customer invoice release staging rollback metrics alert "
    "pager schema query latency socket token scope sprint demo design icon"
)
WORDS = _VOCABULARY.split()
PERSONA = "U00000000"  # the person --persona-share is about
# Secrets and personal data planted with --secret-share: one of each kind the built-in
# scrubbers redact (secrets and emails are on by default), with text around them.
PLANTED = (
    "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
    "xapp-1-A0123456789-1234567890123-abcdef0123456789",
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_0123456789abcdefghijABCDEFGHIJ012345",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
    "sk-proj-abcdefghij0123456789ABCDEFGHIJ",
    "sk_live_0123456789abcdefABCDEF",
    "AIzaSyA0123456789abcdefghijklmnopqrstuv",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "Authorization: Bearer abcdef0123456789ABCDEFxyz",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0123456789\n-----END RSA PRIVATE KEY-----",
    "mail me at dana.scully+work@fbi.example.com",
    "<mailto:ops@example.org|ops@example.org>",
)


def _text(rng: random.Random, secret_share: float = 0.0) -> str:
    text = " ".join(rng.choices(WORDS, k=rng.randint(3, 25)))
    if secret_share and rng.random() < secret_share:
        words = text.split(" ")
        words.insert(rng.randrange(len(words) + 1), rng.choice(PLANTED))
        text = " ".join(words)
    return text


def _human(rng: random.Random, ts: str, user: str, text: str) -> dict[str, Any]:
    return {
        "client_msg_id": f"{rng.getrandbits(32):08x}-0000-4000-8000-{rng.getrandbits(48):012x}",
        "type": "message",
        "text": text,
        "user": user,
        "ts": ts,
        "blocks": [
            {
                "type": "rich_text",
                "block_id": f"{rng.getrandbits(20):05x}",
                "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
            }
        ],
        "team": TEAM,
        "user_team": TEAM,
        "source_team": TEAM,
        "user_profile": {
            "avatar_hash": f"{rng.getrandbits(48):012x}",
            "image_72": f"https://avatars.example.invalid/{user}_72.png",
            "first_name": user.lower(),
            "real_name": f"Person {user}",
            "display_name": user.lower(),
            "team": TEAM,
            "name": user.lower(),
            "is_restricted": False,
            "is_ultra_restricted": False,
        },
    }


@dataclass(frozen=True)
class Shape:
    """What the messages of a synthetic export look like (see the module docstring)."""

    thread_sizes: tuple[int, int] | None = None  # (fewest, most) messages per thread; None: legacy mix
    persona_share: float | None = None
    secret_share: float = 0.0


def _channel_messages(
    rng: random.Random, count: int, users: list[str], days: int, shape: Shape = Shape()
) -> list[dict[str, Any]]:
    """About ``count`` messages for one channel over ``days`` days."""
    messages: list[dict[str, Any]] = []
    others = [u for u in users if u != PERSONA]

    def author() -> str:
        if shape.persona_share is None:
            return rng.choice(users)
        return PERSONA if rng.random() < shape.persona_share else rng.choice(others)

    def text() -> str:
        return _text(rng, shape.secret_share)

    span = days * 86_400
    used: set[str] = set()

    def stamp(seconds: float) -> str:
        while True:
            ts = f"{int(seconds)}.{rng.randrange(1_000_000):06d}"
            if ts not in used:
                used.add(ts)
                return ts

    while len(messages) < count:
        at = START + rng.random() * span
        roll = rng.random()
        if roll < 0.01:
            user = rng.choice(users)
            messages.append(
                {"type": "message", "subtype": "channel_join", "ts": stamp(at), "user": user,
                 "text": f"<@{user}> has joined the channel"}
            )  # fmt: skip
            continue
        if roll < 0.03:
            messages.append(
                {"type": "message", "subtype": "bot_message", "bot_id": "B0SYNTHBOT", "username": "ci",
                 "ts": stamp(at), "text": "build passed: " + _text(rng)}
            )  # fmt: skip
            continue
        root = _human(rng, stamp(at), author(), text())
        if rng.random() < 0.04:
            root["files"] = [{"id": f"F{rng.getrandbits(32):08X}", "mode": "hidden_by_limit"}]
            root["text"] = ""
        messages.append(root)
        if shape.thread_sizes is not None:
            reply_count = rng.randint(*shape.thread_sizes) - 1
        else:
            reply_count = rng.randint(1, 8) if rng.random() < 0.33 else 0
        if reply_count:
            replies = []
            t = at
            for _ in range(reply_count):
                t += rng.expovariate(1 / 3600)  # mean one hour apart: some land on later days
                reply = _human(rng, stamp(t), author(), text())
                reply["thread_ts"] = root["ts"]
                reply["parent_user_id"] = root["user"]
                if rng.random() < 0.05:
                    reply["edited"] = {"user": reply["user"], "ts": stamp(t + 60)}
                replies.append(reply)
            root.update(
                {
                    "thread_ts": root["ts"],
                    "reply_count": len(replies),
                    "latest_reply": replies[-1]["ts"],
                    "reply_users": sorted({r["user"] for r in replies}),
                }
            )
            messages.extend(replies)
    return messages


def generate(
    target: Path,
    messages: int,
    *,
    channels: int = 20,
    users: int = 50,
    seed: int = 1,
    compact: bool = False,
    shape: Shape = Shape(),
) -> Path:
    """Write an unzipped export of about ``messages`` messages to ``target``; returns it.

    ``compact`` writes day files without indentation; ``shape`` sets thread sizes, the
    persona's share and planted secrets (the defaults give the legacy mix)."""
    rng = random.Random(seed)
    indent = None if compact else 4
    target.mkdir(parents=True, exist_ok=True)
    user_ids = [f"U{n:08d}" for n in range(users)]
    records = [
        {
            "id": u,
            "team_id": TEAM,
            "name": u.lower(),
            "real_name": f"Person {u}",
            "profile": {"display_name": u.lower(), "real_name": f"Person {u}"},
        }
        for u in user_ids
    ]
    (target / "users.json").write_text(json.dumps(records, indent=4), encoding="utf-8")
    names = [f"channel-{n:03d}" for n in range(channels)]
    listing = [{"id": f"C{n:08d}", "name": name, "is_archived": False} for n, name in enumerate(names)]
    (target / "channels.json").write_text(json.dumps(listing, indent=4), encoding="utf-8")
    per_channel = -(-messages // channels)
    days = max(7, per_channel // 100)  # about 100 messages per channel and day
    for name in names:
        by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for message in _channel_messages(rng, per_channel, user_ids, days, shape):
            day = _day(float(message["ts"]))
            by_day[day].append(message)
        folder = target / name
        folder.mkdir(exist_ok=True)
        for day, day_messages in by_day.items():
            day_messages.sort(key=lambda m: float(m["ts"]))
            data = json.dumps(day_messages, indent=indent, separators=None if indent else (",", ":"))
            (folder / f"{day}.json").write_text(data, encoding="utf-8")
    return target


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--compact", action="store_true", help="day files without indentation")
    parser.add_argument("--thread-sizes", metavar="MIN-MAX", help="messages per thread, e.g. 1-12")
    parser.add_argument("--persona-share", type=float, help=f"share of messages {PERSONA} writes")
    parser.add_argument("--secret-share", type=float, default=0.0, help="share of messages with a secret")
    args = parser.parse_args(argv)
    sizes = None
    if args.thread_sizes:
        low, _, high = args.thread_sizes.partition("-")
        sizes = (int(low), int(high or low))
    shape = Shape(thread_sizes=sizes, persona_share=args.persona_share, secret_share=args.secret_share)
    generate(
        args.target,
        args.messages,
        channels=args.channels,
        users=args.users,
        seed=args.seed,
        compact=args.compact,
        shape=shape,
    )
    print(f"wrote {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
