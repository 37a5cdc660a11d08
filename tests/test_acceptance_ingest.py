"""Acceptance: ``doppelkit ingest`` on Slack exports these tests build themselves.

Plays the hidden acceptance checks of the sources and formatters issues on exports that share
nothing with the bundled sample workspace or the other tests' builders: an independent, seeded
generator writes a realistic export (enterprise ``W…`` IDs, users with only a real name or
only a handle, unicode display names, a deleted user, bots of every shape, every system
subtype, edits, threads spanning several day files, rich-text-only messages, mrkdwn of every
kind, a private channel, DMs, group DMs, an unlisted folder and damaged day files), both as a
folder and as zips. Alongside each message it records what the person wrote *as people read
it* (cleaned by hand from the generator's own pieces, not by doppelkit's cleanup), so the
expected dataset (which persona runs qualify, their exact text, where they came from) is
computed independently of the code under test. The real CLI then runs and its JSONL is
checked against that expectation.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from doppelkit.testing import run_cli

pytest.importorskip("doppelkit_slack")

SEED = 20240229
TEAM = "T07ACMEQZ"
GUEST_TEAM = "T09GUESTZ"
PERSONA = "W0ZOE4242"
PERSONA_DISPLAY = "Zoë Ångström 🚀"
PERSONA_REAL = "Zoe Angstrom"
SEPARATOR = "\n\n---\n\n"  # docs/formatters.md: one reply of several Slack messages

# Markers planted in text that must never reach a dataset.
MARK_PRIVATE, MARK_DM, MARK_MPIM, MARK_ORPHAN = "zqprivate", "zqdirect", "zqgroupdm", "zqorphan"
MARK_BOT, MARK_SYS, MARK_HIDDEN, MARK_CORRUPT = "zqbotpost", "zqsysevent", "zqhidden", "zqcorrupt"
MARKERS = (MARK_PRIVATE, MARK_DM, MARK_MPIM, MARK_ORPHAN, MARK_BOT, MARK_SYS, MARK_HIDDEN, MARK_CORRUPT)
PRIVATE_NAMES = ("secret-plans", "G0PRIV0001", "D0DMZOE001", "mpdm-zoe.a--bob-1")

# users.json: every naming shape Slack produces. label = what people see (display, real, handle).
USERS: list[dict[str, Any]] = [
    {
        "id": PERSONA,
        "team_id": TEAM,
        "name": "zoe.a",
        "real_name": PERSONA_REAL,
        "profile": {"display_name": PERSONA_DISPLAY, "real_name": PERSONA_REAL, "title": "Staff Eng"},
        "is_bot": False,
        "deleted": False,
    },
    {  # only a real name (no handle, empty display name)
        "id": "U01ALICE9",
        "team_id": TEAM,
        "real_name": "Alice Moreau",
        "profile": {"display_name": "", "real_name": "Alice Moreau"},
    },
    {"id": "U02BOBBY9", "team_id": TEAM, "name": "bob"},  # only a handle, no profile at all
    {
        "id": "W03CARL99",
        "team_id": TEAM,
        "name": "carl",
        "profile": {"display_name": "Carl ☕ Jr.", "real_name": "Carl Jr"},
    },
    {
        "id": "U04DANA99",
        "team_id": TEAM,
        "name": "dana",
        "deleted": True,
        "profile": {"display_name": "Dana (ex)", "real_name": "Dana Old"},
    },
    {
        "id": "U05DEPLOY",
        "team_id": TEAM,
        "name": "deploybot",
        "is_bot": True,
        "profile": {"bot_id": "B05DEPLOY", "real_name": "Deploy Bot", "display_name": ""},
    },
    # Slackbot (USLACKBOT) is not listed: many exports and users.list pages leave it out.
    {"id": "U06SAMONE", "team_id": TEAM, "name": "sam1", "profile": {"display_name": "Sam"}},
    {"id": "U07SAMTWO", "team_id": GUEST_TEAM, "name": "sam2", "profile": {"display_name": "Sam"}},
    {"id": "U08QUINN9", "team_id": TEAM, "name": "quinn", "profile": {"display_name": "Quiet Quinn"}},
]
LABELS = {
    PERSONA: PERSONA_DISPLAY,
    "U01ALICE9": "Alice Moreau",
    "U02BOBBY9": "bob",
    "W03CARL99": "Carl ☕ Jr.",
    "U04DANA99": "Dana (ex)",
}
# Who speaks: people (the deleted one and an ID missing from users.json included).
OTHERS = ["U01ALICE9", "U02BOBBY9", "W03CARL99", "U04DANA99", "U99GHOST9", "U06SAMONE"]

CHANNELS = [  # (id, name): public, listed in channels.json
    ("C01GENERL", "general"),
    ("C02ENGBCK", "eng-backend"),
    ("C03NAIVE1", "naïve-ideas"),
    ("C04RANDOM", "random"),
]
EMPTY_CHANNEL = ("C05NOFILE", "no-messages-exported")  # listed, but has no folder

WORDS = [
    "deploy",
    "migration",
    "queue",
    "schema",
    "cache",
    "latency",
    "budget",
    "rollout",
    "config",
    "review",
    "patch",
    "index",
    "customer",
    "invoice",
    "dashboard",
    "ticket",
    "flaky",
    "tests",
    "staging",
    "window",
    "retry",
    "worker",
    "cron",
    "metrics",
    "alerting",
    "runbook",
    "owner",
    "sprint",
    "design",
    "draft",
    "branch",
    "merge",
    "release",
    "hotfix",
    "incident",
    "pager",
    "backfill",
    "partition",
    "shard",
    "replica",
    "vacuum",
    "timeout",
    "socket",
    "payload",
    "webhook",
    "batch",
]
SHORT_REPLIES = ["ok", "lgtm :+1:", "on it", "yep", "thanks!", "same", ":eyes:", "done", "+1"]

# (raw mrkdwn, what people read): cleaned by hand, per docs/formatters.md's table.
PIECES: list[tuple[str, str]] = [
    ("<@U01ALICE9>", "@Alice Moreau"),
    ("<@W03CARL99|carl>", "@Carl ☕ Jr."),
    (f"<@{PERSONA}>", "@" + PERSONA_DISPLAY),
    ("<@U02BOBBY9|bob>", "@bob"),
    ("<@U99GHOST9|ghost>", "@ghost"),  # not in users.json: the inline name
    ("<@W77NOBODY>", "@W77NOBODY"),  # not in users.json, no inline name: the ID
    ("<#C02ENGBCK|eng-backend>", "#eng-backend"),
    ("<!here>", "@here"),
    ("<!channel>", "@channel"),
    (
        "<https://wiki.acme.test/runbook?a=1&amp;b=2|the runbook>",
        "the runbook (https://wiki.acme.test/runbook?a=1&b=2)",
    ),
    ("<https://status.acme.test/incidents/42>", "https://status.acme.test/incidents/42"),
    ("<http://grafana.acme.test|grafana.acme.test>", "grafana.acme.test"),
    ("R&amp;D", "R&D"),
    ("p99 &lt; 250ms &amp;&amp; p50 &gt; 20ms", "p99 < 250ms && p50 > 20ms"),
    (":tada:", ":tada:"),
    (":+1::skin-tone-3:", ":+1::skin-tone-3:"),
    ("*really*", "*really*"),
    ("_maybe_", "_maybe_"),
    ("`make test &amp;&amp; make lint`", "`make test && make lint`"),
    ("naïve ünïcode ✨", "naïve ünïcode ✨"),
    (
        "```\nfor shard in shards:\n    if shard.lag &gt; 30:\n        page(&lt;oncall&gt;)\n```",
        "```\nfor shard in shards:\n    if shard.lag > 30:\n        page(<oncall>)\n```",
    ),
]


@dataclass
class Expected:
    """One message as the dataset should see it (None = not a line of the conversation)."""

    channel: str
    root: str  # the thread it belongs to, as the dataset names it
    ts: str
    persona: bool
    clean: str | None  # None: dropped before formatting (bot, system event, empty…)


@dataclass
class GeneratedExport:
    root: Path
    messages: list[Expected] = field(default_factory=list)
    corrupt_files: list[str] = field(default_factory=list)
    drops: Counter[str] = field(default_factory=Counter)  # the report's drops we can predict
    records_seen: int = 0  # message records that reach threads (content, well-formed, unique)
    thread_roots: set[tuple[str, str]] = field(default_factory=set)

    def lines_by_thread(self) -> dict[tuple[str, str], list[Expected]]:
        threads: dict[tuple[str, str], list[Expected]] = defaultdict(list)
        for m in self.messages:
            if m.clean:
                threads[(m.channel, m.root)].append(m)
        for lines in threads.values():
            lines.sort(key=lambda m: float(m.ts))
        return threads

    def replies(self, min_length: int) -> dict[tuple[str, tuple[str, ...]], tuple[str, str]]:
        """(channel, message ts of the run) → (thread ts, response text) for every persona run
        whose cleaned messages add up to ``min_length`` characters: the qualifying replies."""
        out: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {}
        for (channel, root), lines in self.lines_by_thread().items():
            run: list[Expected] = []
            for line in [*lines, None]:
                if line is not None and line.persona:
                    run.append(line)
                    continue
                if run and sum(len(m.clean or "") for m in run) >= min_length:
                    text = SEPARATOR.join(m.clean or "" for m in run)
                    out[(channel, tuple(m.ts for m in run))] = (root, text)
                run = []
        return out

    def too_short(self, min_length: int) -> int:
        n = 0
        for lines in self.lines_by_thread().values():
            run: list[Expected] = []
            for line in [*lines, None]:
                if line is not None and line.persona:
                    run.append(line)
                    continue
                if run and sum(len(m.clean or "") for m in run) < min_length:
                    n += len(run)
                run = []
        return n


class Generator:
    """Writes a seeded Slack export and records the expected outcome of every message."""

    def __init__(self, root: Path, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.out = GeneratedExport(root)
        self.days: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        self.clock = dt.datetime(2024, 2, 26, 8, 0, tzinfo=dt.UTC).timestamp()
        self.seconds: set[int] = set()

    # -- text ------------------------------------------------------------------------------

    def sentence(self, long: bool) -> tuple[str, str]:
        rng = self.rng
        raw: list[str] = []
        clean: list[str] = []
        for _ in range(rng.randint(6, 16) if long else rng.randint(2, 5)):
            if rng.random() < 0.22:
                r, c = rng.choice(PIECES)
            else:
                r = c = rng.choice(WORDS)
            raw.append(r)
            clean.append(c)
        return " ".join(raw), " ".join(clean)

    def persona_text(self) -> tuple[str, str]:
        if self.rng.random() < 0.3:
            text = self.rng.choice(SHORT_REPLIES)
            return text, text
        return self.sentence(long=self.rng.random() < 0.8)

    # -- records ---------------------------------------------------------------------------

    def ts(self, at: float) -> str:
        second = int(at)
        while second in self.seconds:  # unique seconds: floats of two ts never tie
            second += 1
        self.seconds.add(second)
        return f"{second}.{self.rng.randrange(1_000_000):06d}"

    def put(self, folder: str, record: dict[str, Any]) -> None:
        day = dt.datetime.fromtimestamp(float(record["ts"]), dt.UTC).strftime("%Y-%m-%d")
        self.days[folder][day].append(record)

    def expect(self, channel: str, root: str, record: dict[str, Any], persona: bool, clean: str | None):
        self.out.messages.append(Expected(channel, root, record["ts"], persona, clean))
        self.out.records_seen += 1
        self.out.thread_roots.add((channel, root))

    def human(self, user: str, at: float, raw: str, **extra: Any) -> dict[str, Any]:
        record = {
            "client_msg_id": f"{self.rng.getrandbits(64):016x}",
            "type": "message",
            "text": raw,
            "user": user,
            "ts": self.ts(at),
            "team": TEAM,
            **extra,
        }
        if user in LABELS and self.rng.random() < 0.5:
            record["user_profile"] = {"display_name": LABELS[user], "real_name": LABELS[user]}
        return record

    def bot_record(self, at: float, kind: int) -> dict[str, Any]:
        ts = self.ts(at)
        text = f"build {self.rng.randint(100, 999)} finished {MARK_BOT}"
        if kind == 0:  # an integration: bot_id + username, no user
            return {
                "type": "message",
                "subtype": "bot_message",
                "bot_id": "B0CIBOT01",
                "username": "CI Robot",
                "text": text,
                "ts": ts,
            }
        if kind == 1:  # a bot user (is_bot in users.json) posting as a user
            return {
                "type": "message",
                "user": "U05DEPLOY",
                "bot_id": "B05DEPLOY",
                "text": text,
                "ts": ts,
                "bot_profile": {"id": "B05DEPLOY", "name": "deploybot"},
            }
        if kind == 2:  # Slackbot
            return {"type": "message", "user": "USLACKBOT", "text": text, "ts": ts}
        if kind == 3:  # an app posting on the persona's behalf: still a bot message
            return {
                "type": "message",
                "user": PERSONA,
                "bot_id": "B0APPZOE1",
                "text": text,
                "ts": ts,
                "app_id": "A0APP0001",
            }
        # attachments only, empty text
        return {
            "type": "message",
            "subtype": "bot_message",
            "bot_id": "B0CIBOT01",
            "text": "",
            "ts": ts,
            "attachments": [{"fallback": f"alert {MARK_BOT}", "text": f"disk full {MARK_BOT}"}],
        }

    def blocks_only(self, user: str, at: float, **extra: Any) -> tuple[dict[str, Any], str]:
        """A message whose words live only in rich-text ``blocks`` (``text`` is empty)."""
        word = self.rng.choice(WORDS)
        elements = [
            {"type": "text", "text": f"shipping the {word} fix for "},
            {"type": "user", "user_id": "U01ALICE9"},
            {"type": "text", "text": " now & checking "},
            {"type": "link", "url": "https://ci.acme.test/run/7", "text": "the CI run"},
            {"type": "text", "text": ", "},
            {"type": "text", "text": "really", "style": {"bold": True}},
            {"type": "text", "text": " soon "},
            {"type": "emoji", "name": "rocket", "unicode": "1f680"},
        ]
        clean = (
            f"shipping the {word} fix for @Alice Moreau now & checking "
            "the CI run (https://ci.acme.test/run/7), *really* soon :rocket:"
        )
        blocks = [
            {
                "type": "rich_text",
                "block_id": "b1",
                "elements": [{"type": "rich_text_section", "elements": elements}],
            }
        ]
        return self.human(user, at, "", blocks=blocks, **extra), clean

    # -- conversations ---------------------------------------------------------------------

    def channel(self, channel_id: str, folder: str, n_threads: int) -> None:
        rng = self.rng
        at = self.clock
        for i in range(n_threads):
            at += rng.uniform(1800, 5 * 3600)
            self.system_events(channel_id, folder, at - 600)
            author_roll = rng.random()
            persona_root = author_roll < 0.35
            author = PERSONA if persona_root else rng.choice(OTHERS)
            if persona_root:
                raw, clean = self.persona_text()
            else:
                raw, clean = self.sentence(long=rng.random() < 0.5)
            if i % 9 == 4:  # a root that survives only as a tombstone, its replies still a thread
                root = {
                    "type": "message",
                    "subtype": "tombstone",
                    "user": "USLACKBOT",
                    "hidden": True,
                    "text": f"This message was deleted. {MARK_SYS}",
                    "ts": self.ts(at),
                }
                self.out.drops["deleted"] += 1
                root_expected: tuple[bool, str | None] | None = None
            else:
                root = self.human(author, at, raw)
                root_expected = (author == PERSONA, clean)
            n_replies = 0 if rng.random() < 0.35 else rng.randint(1, 9)
            spread = 4 * 86400 if rng.random() < 0.3 else 3 * 3600
            reply_times = sorted(at + rng.uniform(30, spread) for _ in range(n_replies))
            replies: list[dict[str, Any]] = []
            expectations: list[tuple[dict[str, Any], bool, str | None]] = []
            thread_ts = root["ts"]
            for when in reply_times:
                for record, persona, clean_text in self.reply(when, thread_ts, author):
                    replies.append(record)
                    expectations.append((record, persona, clean_text))
            if replies:
                root["thread_ts"] = thread_ts
                root["reply_count"] = len(replies)
                users = sorted({r.get("user") or r.get("bot_id") for r in replies})
                root["reply_users"] = users
                root["reply_users_count"] = len(users)
                root["latest_reply"] = replies[-1]["ts"]
                root["replies"] = [{"user": r.get("user"), "ts": r["ts"]} for r in replies]
            self.put(folder, root)
            if root_expected is not None:
                self.expect(channel_id, thread_ts, root, *root_expected)
            for record in replies:
                self.put(folder, record)
                if record.get("subtype") in ("thread_broadcast", "reply_broadcast") and rng.random() < 0.5:
                    self.put(folder, dict(record, root={"ts": thread_ts}))  # exported twice
            for record, persona, clean_text in expectations:
                if not record.get("hidden"):  # hidden records never reach a thread
                    self.expect(channel_id, thread_ts, record, persona, clean_text)
        self.clock = at

    def reply(self, at: float, thread_ts: str, parent: str) -> list[tuple[dict[str, Any], bool, str | None]]:
        """One turn of a thread: 1-3 records (persona runs come in bursts)."""
        rng = self.rng
        extra = {"thread_ts": thread_ts, "parent_user_id": parent}
        roll = rng.random()
        out: list[tuple[dict[str, Any], bool, str | None]] = []
        if roll < 0.42:  # the persona, sometimes several messages in a row
            for k in range(rng.choice((1, 1, 1, 2, 3))):
                when = at + k * rng.uniform(5, 90)
                shape = rng.random()
                if shape < 0.07:
                    record, clean = self.blocks_only(PERSONA, when, **extra)
                    out.append((record, True, clean))
                    continue
                raw, clean = self.persona_text()
                if shape < 0.12:
                    record = self.human(PERSONA, when, raw, subtype="thread_broadcast", **extra)
                elif shape < 0.15:  # the legacy name of a thread broadcast, in older exports
                    record = self.human(PERSONA, when, raw, subtype="reply_broadcast", **extra)
                elif shape < 0.2:
                    record = self.human(PERSONA, when, raw, subtype="me_message", **extra)
                elif shape < 0.27:
                    record = self.human(
                        PERSONA, when, raw, subtype="file_share", files=[{"id": "F1"}], **extra
                    )
                elif shape < 0.31:  # an upload without words
                    record = self.human(
                        PERSONA, when, "", subtype="file_share", files=[{"id": "F2"}], **extra
                    )
                    self.out.drops["empty"] += 1
                    out.append((record, True, None))
                    continue
                elif shape < 0.45:
                    record = self.human(
                        PERSONA, when, raw, edited={"user": PERSONA, "ts": self.ts(when + 60)}, **extra
                    )
                else:
                    record = self.human(PERSONA, when, raw, **extra)
                out.append((record, True, clean))
                if rng.random() < 0.15:  # a bot interjects mid-run: not a line, the run goes on
                    out.append(
                        (
                            self.bot_record(
                                when + 1,
                                rng.randrange(5),
                            )
                            | extra,
                            False,
                            None,
                        )
                    )
                    self.out.drops["bot"] += 1
            return out
        if roll < 0.5:
            record = self.bot_record(at, rng.randrange(5)) | extra
            self.out.drops["bot"] += 1
            return [(record, False, None)]
        if roll < 0.53:  # hidden: never shown, whoever wrote it
            record = self.human(
                PERSONA, at, f"{MARK_HIDDEN} draft text that was never shown to anyone", hidden=True, **extra
            )
            self.out.drops["hidden"] += 1
            return [(record, False, None)]
        user = rng.choice(OTHERS)
        raw, clean = self.sentence(long=rng.random() < 0.6)
        if rng.random() < 0.05:
            record, clean = self.blocks_only(user, at, **extra)
            return [(record, False, clean)]
        return [(self.human(user, at, raw, **extra), False, clean)]

    def system_events(self, channel_id: str, folder: str, at: float) -> None:
        """Top-level events, several by the persona: none is ever conversation."""
        rng = self.rng
        p = f"<@{PERSONA}>"
        events = [
            ("channel_join", f"{p} has joined the channel {MARK_SYS}"),
            ("channel_leave", f"{p} has left the channel {MARK_SYS}"),
            ("channel_topic", f"{p} set the channel topic: all about {MARK_SYS} the topic"),
            ("channel_purpose", f"{p} set the channel purpose: to discuss {MARK_SYS} and more things here"),
            ("channel_name", f"{p} renamed the channel from old to new {MARK_SYS}"),
            ("pinned_item", f"{p} pinned a message to this channel. {MARK_SYS}"),
            ("reminder_add", f"{p} set up a reminder “{MARK_SYS} standup notes please” in this channel"),
            ("huddle_thread", f"A huddle started {MARK_SYS}"),
            ("bot_add", f"{p} added an integration to this channel: {MARK_SYS}"),
        ]
        if rng.random() < 0.6:
            subtype, text = rng.choice(events)
            record = {"type": "message", "subtype": subtype, "user": PERSONA, "text": text, "ts": self.ts(at)}
            if subtype == "huddle_thread":
                record["room"] = {"id": "R01", "name": f"{MARK_SYS} huddle"}
            self.put(folder, record)
            self.out.drops[subtype] += 1

    def write(self) -> GeneratedExport:
        root = self.out.root
        for channel_id, name in CHANNELS:
            self.channel(channel_id, name, 18)
        # A hidden edit record (subtype + hidden), and a message without a usable ts.
        self.put(
            "general",
            {
                "type": "message",
                "subtype": "message_changed",
                "hidden": True,
                "ts": self.ts(self.clock),
                "message": {"text": MARK_HIDDEN, "user": PERSONA},
            },
        )
        self.out.drops["message_changed"] += 1
        self.days["general"][min(self.days["general"])].append(
            {"type": "message", "user": PERSONA, "ts": "soon", "text": MARK_HIDDEN}
        )
        self.out.drops["malformed"] += 1
        self.channel_archive()

        # Conversations that must never be read: a private channel, a DM, a group DM, an orphan.
        for folder, mark in (
            ("secret-plans", MARK_PRIVATE),
            ("D0DMZOE001", MARK_DM),
            ("mpdm-zoe.a--bob-1", MARK_MPIM),
            ("old-archive", MARK_ORPHAN),
        ):
            for k in range(6):
                at = self.clock - k * 7200
                raw = f"{mark} this is a long enough message that would qualify as a reply {k}"
                self.put(folder, self.human(PERSONA if k % 2 else "U01ALICE9", at, raw))
                self.put(folder, self.human(PERSONA, at + 30, raw + " again, with more words"))

        root.mkdir(parents=True)
        self.corrupt()
        for folder, days in self.days.items():
            (root / folder).mkdir(exist_ok=True)
            for day, records in days.items():
                path = root / folder / f"{day}.json"
                if f"{folder}/{day}.json" not in self.out.corrupt_files:
                    self.rng.shuffle(records)  # any order: the source sorts by numeric ts
                    path.write_text(json.dumps(records, indent=1, ensure_ascii=self.rng.random() < 0.5))
        members = [u for u in USERS if u["team_id"] == TEAM]
        channels = [
            {
                "id": cid,
                "name": name,
                "created": 1600000000,
                "creator": "U01ALICE9",
                "is_archived": False,
                "is_general": name == "general",
                "members": [u["id"] for u in members],
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
            }
            for cid, name in [*CHANNELS, EMPTY_CHANNEL]
        ]
        (root / "users.json").write_text(json.dumps(USERS, indent=1, ensure_ascii=False))
        (root / "channels.json").write_text(json.dumps(channels, indent=1, ensure_ascii=False))
        (root / "groups.json").write_text(
            json.dumps([{"id": "G0PRIV0001", "name": "secret-plans", "members": [PERSONA]}])
        )
        (root / "dms.json").write_text(json.dumps([{"id": "D0DMZOE001", "members": [PERSONA, "U02BOBBY9"]}]))
        (root / "mpims.json").write_text(
            json.dumps(
                [
                    {
                        "id": "G0MPIM0001",
                        "name": "mpdm-zoe.a--bob-1",
                        "members": [PERSONA, "U02BOBBY9", "U01ALICE9"],
                    }
                ]
            )
        )
        (root / "integration_logs.json").write_text("[]")
        return self.out

    def channel_archive(self) -> None:
        record = {
            "type": "message",
            "subtype": "channel_archive",
            "user": PERSONA,
            "ts": self.ts(self.clock + 60),
            "text": f"archived the channel {MARK_SYS}",
        }
        self.put("random", record)
        self.out.drops["channel_archive"] += 1

    def corrupt(self) -> None:
        """Damage two day files of public channels: the messages in them are lost (and only
        those), the files are listed in the report, the run goes on."""
        victims = [("random", 0), ("eng-backend", 2)]
        for (folder, index), how in zip(victims, ("latin-1", "truncated"), strict=True):
            day = sorted(self.days[folder])[index]
            records = self.days[folder][day]
            records.append(
                self.human(
                    PERSONA,
                    float(records[0]["ts"]) + 1,
                    f"{MARK_CORRUPT} café a long message in a broken file",
                )
            )
            data = json.dumps(records, ensure_ascii=False).encode()
            if how == "latin-1":
                data = data.replace("café".encode(), "café".encode("latin-1"))
            else:
                data = data[: len(data) * 2 // 3]
            path = self.out.root / folder / f"{day}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            name = f"{folder}/{day}.json"
            self.out.corrupt_files.append(name)
            lost = {r["ts"] for r in records}
            channel_id = next(cid for cid, n in CHANNELS if n == folder)
            survivors = [m for m in self.out.messages if not (m.channel == channel_id and m.ts in lost)]
            self.out.records_seen -= len(self.out.messages) - len(survivors)
            self.out.messages = survivors
            for record in records:  # their drops never happen either
                reason = _predicted_drop(record)
                if reason:
                    self.out.drops[reason] -= 1
        self.out.thread_roots = {(m.channel, m.root) for m in self.out.messages}


def _is_bot_record(record: dict[str, Any]) -> bool:
    return (
        bool(record.get("bot_id"))
        or record.get("subtype") == "bot_message"
        or record.get("user")
        in (
            "U05DEPLOY",
            "USLACKBOT",
        )
    )


def _predicted_drop(record: dict[str, Any]) -> str | None:
    subtype = record.get("subtype")
    if subtype == "tombstone":
        return "deleted"
    if subtype not in (
        None,
        "thread_broadcast",
        "reply_broadcast",
        "me_message",
        "file_share",
        "bot_message",
    ):
        return str(subtype)
    if record.get("hidden"):
        return "hidden"
    if _is_bot_record(record):
        return "bot"
    if not record.get("text") and not record.get("blocks"):
        return "empty"
    return None


# -- running the CLI -------------------------------------------------------------------------


@dataclass
class Run:
    rc: int
    output: str
    examples: list[dict[str, Any]]
    report: dict[str, Any]
    files: str  # every dataset file's text, for marker searches


def ingest(path: Path, out: Path, home: Path, persona: str, *extra: str) -> Run:
    result = run_cli(
        [
            "ingest",
            "source=slack_export",
            f"source.path={path}",
            f"persona.user={persona}",
            f"dataset.path={out}",
            f"home={home}",
            *extra,
        ],
        timeout=120,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        return Run(result.returncode, output, [], {}, "")
    eval_path = out.with_name(out.name.removesuffix(".jsonl") + ".eval.jsonl")
    report_path = out.with_name(out.name.removesuffix(".jsonl") + ".report.json")
    texts = [p.read_text(encoding="utf-8") for p in (out, eval_path) if p.exists()]
    examples = [json.loads(line) for text in texts for line in text.splitlines() if line.strip()]
    report_text = report_path.read_text(encoding="utf-8")
    return Run(0, output, examples, json.loads(report_text), "".join(texts) + report_text)


def zip_export(source: Path, target: Path, wrap: str = "") -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        if wrap:  # as re-zipping on a Mac does: one top-level folder, and resource-fork junk
            zf.writestr(wrap + "/", "")
            zf.writestr(f"__MACOSX/{wrap}/._users.json", b"\x00\x05\x16\x07junk")
        for path in sorted(source.rglob("*")):
            name = wrap + ("/" if wrap else "") + path.relative_to(source).as_posix()
            if path.is_dir():
                zf.writestr(name + "/", "")
            else:
                zf.write(path, name)
    return target


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> GeneratedExport:
    # A folder name Hydra's grammar cannot read unquoted, as ~/Téléchargements is for many.
    generated = Generator(tmp_path_factory.mktemp("acme") / "Téléchargements ☕" / "export").write()
    # The generator must have produced what these checks are about.
    assert len(generated.messages) >= 250
    spans = defaultdict(set)
    for m in generated.messages:
        spans[(m.channel, m.root)].add(dt.datetime.fromtimestamp(float(m.ts), dt.UTC).date())
    assert sum(len(days) >= 3 for days in spans.values()) >= 3, "threads spanning 3+ day files"
    assert len(generated.replies(40)) >= 50
    return generated


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def chat_run(export: GeneratedExport, work: Path) -> Run:
    run = ingest(export.root, work / "chat" / "zoe.jsonl", work / "home", PERSONA_DISPLAY)
    assert run.rc == 0, run.output
    return run


# -- the checks ------------------------------------------------------------------------------


def check_examples(run: Run, export: GeneratedExport, min_length: int, formatter: str) -> None:
    """Checks 1-5: own text, min length, nothing that must not be there, recall, provenance."""
    expected = export.replies(min_length)
    reply_texts_by_thread: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (channel, _), (root, text) in expected.items():
        reply_texts_by_thread[(channel, root)].add(text)

    recovered: set[tuple[str, tuple[str, ...]]] = set()
    for example in run.examples:
        messages, meta = example["messages"], example["meta"]
        assert messages[0]["role"] == "system" and messages[-1]["role"] == "assistant"
        key = (meta["channel"], tuple(meta["message_ts"]))
        # 1. the response is exactly the persona's run, cleaned
        assert key in expected, f"response is not a qualifying persona run: {meta} {messages[-1]}"
        root, text = expected[key]
        assert messages[-1]["content"] == text, meta
        assert key not in recovered, f"reply recovered twice: {key}"
        recovered.add(key)
        # 2. never below min_length (counted on the run's messages, so the joined text too)
        assert len(messages[-1]["content"]) >= min_length
        # 1 (context). persona turns in the context are earlier replies of the same thread, whole
        for message in messages[1:-1]:
            assert message["role"] in ("user", "assistant")
            if message["role"] == "assistant":
                assert formatter == "chat", "alpaca puts the whole context in one user turn"
                assert message["content"] in reply_texts_by_thread[(meta["channel"], root)], message
        if formatter == "alpaca":
            assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        # 5. provenance
        assert meta["team"] == TEAM
        assert meta["thread_ts"] == root
        assert meta["channel_name"] == dict(CHANNELS)[meta["channel"]]
        assert meta["persona_id"] == PERSONA and meta["persona_label"] == PERSONA_DISPLAY
        assert meta["formatter"] == formatter

    # 3. nothing private, direct, bot, system, hidden, unlisted or from a broken file
    for marker in MARKERS:
        assert marker not in run.files, f"{marker!r} leaked into the dataset"
    for phrase in ("has joined the channel", "has left the channel", "set the channel topic", "CI Robot"):
        assert phrase not in run.files
    for name in PRIVATE_NAMES:
        assert name not in run.files, f"{name!r} named in the dataset or report"

    # 4. recall (train + held-out together)
    missing = sorted(set(expected) - recovered)
    recall = len(recovered) / len(expected)
    assert recall >= 0.95, f"recall {recall:.3f}; missing {missing[:5]}"
    assert not missing, f"{len(missing)} qualifying replies not recovered, e.g. {missing[:3]}"


def test_chat_dataset_is_the_personas_own_words(chat_run: Run, export: GeneratedExport) -> None:
    check_examples(chat_run, export, 40, "chat")
    # the held-out split is by thread: no thread on both sides, both sides used
    assert chat_run.report["eval_examples"] > 0 and chat_run.report["train_examples"] > 0


def test_context_turns_are_earlier_replies(chat_run: Run) -> None:
    with_assistant_context = [
        e for e in chat_run.examples if any(m["role"] == "assistant" for m in e["messages"][1:-1])
    ]
    assert with_assistant_context, "the export should produce threads with several persona replies"
    for example in chat_run.examples:
        roles = [m["role"] for m in example["messages"]]
        assert roles[1] == "user"
        assert all(a != b for a, b in itertools.pairwise(roles[1:])), roles


def test_min_length_override(export: GeneratedExport, work: Path) -> None:
    run = ingest(export.root, work / "long" / "zoe.jsonl", work / "home", PERSONA, "formatter.min_length=90")
    assert run.rc == 0, run.output
    check_examples(run, export, 90, "chat")
    assert run.report["drops"]["too_short"] == export.too_short(90)


def test_alpaca(export: GeneratedExport, work: Path) -> None:
    run = ingest(export.root, work / "alpaca" / "zoe.jsonl", work / "home", PERSONA, "formatter=alpaca")
    assert run.rc == 0, run.output
    check_examples(run, export, 40, "alpaca")
    for example in run.examples:
        assert example["messages"][0]["content"].startswith(f"You are {PERSONA_DISPLAY}, employee")


@pytest.mark.parametrize("wrap", ["", "acme-export-2024"])
def test_zip_reads_like_the_folder(export: GeneratedExport, work: Path, chat_run: Run, wrap: str) -> None:
    archive = zip_export(export.root, work / f"export-{wrap or 'flat'}.zip", wrap)
    persona = PERSONA_REAL.upper() if wrap else PERSONA  # a real name (any case), an ID
    run = ingest(archive, work / f"zip-{wrap or 'flat'}" / "zoe.jsonl", work / "home", persona)
    assert run.rc == 0, run.output
    assert run.examples == chat_run.examples
    for key in ("threads_seen", "messages_seen", "candidate_persona_messages", "examples_kept", "drops"):
        assert run.report[key] == chat_run.report[key], key
    assert sorted(s["path"] for s in run.report["skipped_files"]) == sorted(
        s["path"] for s in chat_run.report["skipped_files"]
    )


def test_report(chat_run: Run, export: GeneratedExport) -> None:
    """6. counts a reader can trust."""
    report = chat_run.report
    expected = export.replies(40)
    assert report["team"] == TEAM and report["persona_id"] == PERSONA
    assert report["threads_seen"] == len(export.thread_roots)
    assert report["messages_seen"] == export.records_seen
    candidates = sum(1 for m in export.messages if m.persona and m.clean)
    assert report["candidate_persona_messages"] == candidates
    assert report["examples_kept"] == len(chat_run.examples) == len(expected)
    assert report["examples_kept"] == report["train_examples"] + report["eval_examples"]
    drops = report["drops"]
    assert drops["too_short"] == export.too_short(40)
    for reason, n in export.drops.items():
        if n:
            assert drops.get(reason) == n, (reason, drops)
    assert drops["direct_message"] == 2  # the DM and the group DM folders, counted, never read
    # the private channel, and the unlisted folder (counted as private while groups.json exists,
    # or listed as skipped)
    orphan_listed = any(s["path"].startswith("old-archive") for s in report["skipped_files"])
    assert drops["private_channel"] + orphan_listed == 2
    skipped = {s["path"]: s["reason"] for s in report["skipped_files"]}
    for name in export.corrupt_files:
        assert name in skipped, skipped
    assert "UTF-8" in skipped[export.corrupt_files[0]]
    assert "JSON" in skipped[export.corrupt_files[1]]
    assert report["scrubbed"] == {}
    # the console shows the same report
    assert "examples kept" in chat_run.output and str(report["examples_kept"]) in chat_run.output


def _no_files_left(folder: Path) -> None:
    assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())


def test_persona_without_messages_exits_2(export: GeneratedExport, work: Path) -> None:
    out = work / "quiet" / "quinn.jsonl"
    out.parent.mkdir()
    run = ingest(export.root, out, work / "home", "Quiet Quinn")
    assert run.rc == 2, run.output
    assert "U08QUINN9" in run.output and "no usable messages" in run.output
    assert "Traceback" not in run.output
    _no_files_left(out.parent)


def test_a_failed_ingest_leaves_no_dataset_folder_under_home(tmp_path: Path) -> None:
    from doppelkit.home import Home
    from doppelkit_slack.sources.export import SAMPLE_WORKSPACE

    home = tmp_path / "home"
    result = run_cli(
        ["ingest", f"source.path={SAMPLE_WORKSPACE}", "persona.user=U0ERIK0002",
         "formatter.min_length=100000", f"home={home}"],
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "no usable messages" in result.stderr, result.stderr
    assert not (home / "datasets").exists() or not any((home / "datasets").rglob("*"))
    assert not any(home.rglob("*.jsonl")) and Home.at(home).dataset_reports() == []
    _no_files_left(home / "cache" / "corpus")


def test_ambiguous_name_exits_2_listing_ids(export: GeneratedExport, work: Path) -> None:
    out = work / "sam" / "sam.jsonl"
    run = ingest(export.root, out, work / "home", "sam")
    assert run.rc == 2, run.output
    assert "ambiguous" in run.output and "U06SAMONE" in run.output and "U07SAMTWO" in run.output
    _no_files_left(out.parent)


def test_missing_path_exits_2(work: Path) -> None:
    out = work / "missing" / "zoe.jsonl"
    run = ingest(work / "no-such-export.zip", out, work / "home", PERSONA)
    assert run.rc == 2, run.output
    assert "does not exist" in run.output and "Traceback" not in run.output
    _no_files_left(out.parent)


def test_bot_and_empty_text_never_become_the_persona(export: GeneratedExport, work: Path) -> None:
    """With bots kept as context, a bot post (even one carrying the persona's user ID) is
    still never an assistant turn."""
    run = ingest(
        export.root, work / "bots" / "zoe.jsonl", work / "home", PERSONA, "formatter.include_bots=true"
    )
    assert run.rc == 0, run.output
    for example in run.examples:
        for message in example["messages"]:
            if message["role"] == "assistant":
                assert MARK_BOT not in message["content"]
    assert MARK_BOT in run.files  # they are context now
    for marker in (MARK_PRIVATE, MARK_DM, MARK_MPIM, MARK_SYS, MARK_HIDDEN, MARK_ORPHAN):
        assert marker not in run.files


def test_rich_text_blocks_are_read_when_text_is_empty() -> None:
    """Lists, quotes and code in rich-text blocks become the mrkdwn Slack would have stored."""
    from doppelkit.models import DatasetReport
    from doppelkit_slack.messages import ChannelInfo, assemble_threads

    def section(*elements: dict[str, Any]) -> dict[str, Any]:
        return {"type": "rich_text_section", "elements": list(elements)}

    blocks = [
        {
            "type": "rich_text",
            "elements": [
                section(
                    {"type": "text", "text": "plan for <today> & "}, {"type": "channel", "channel_id": "C1"}
                ),
                {
                    "type": "rich_text_list",
                    "style": "ordered",
                    "elements": [
                        section({"type": "text", "text": "drain"}),
                        section({"type": "text", "text": "flip"}),
                    ],
                },
                {"type": "rich_text_quote", "elements": [{"type": "text", "text": "no downtime"}]},
                {
                    "type": "rich_text_preformatted",
                    "elements": [{"type": "text", "text": "make deploy\nmake verify"}],
                },
                section(
                    {"type": "broadcast", "range": "here"},
                    {"type": "text", "text": " ok?", "style": {"italic": True}},
                ),
            ],
        }
    ]
    raw = [{"type": "message", "user": PERSONA, "ts": "1700000000.000100", "text": "", "blocks": blocks}]
    channel = ChannelInfo("C1", "ops")
    (thread,) = assemble_threads(raw, team=TEAM, channel=channel, report=DatasetReport())
    assert thread.messages[0].text == (
        "plan for &lt;today&gt; &amp; <#C1>\n1. drain\n2. flip\n&gt; no downtime\n"
        "```make deploy\nmake verify```\n<!here> _ok?_"  # marks around the words, spaces outside
    )


@pytest.mark.parametrize(
    ("arg", "passed"),
    [
        ("persona.user=Zoë Ångström 🚀", "persona.user='Zoë Ångström 🚀'"),
        ("persona.user=O'Brien ☕", 'persona.user="O\'Brien ☕"'),
        ("source.path=/tmp/Téléchargements/export.zip", "source.path='/tmp/Téléchargements/export.zip'"),
        ("persona.user=maya", "persona.user=maya"),  # parses as typed: untouched
        ("formatter.min_length=90", "formatter.min_length=90"),
        ("persona.user='Zoë'", "persona.user='Zoë'"),  # already quoted
    ],
)
def test_names_hydra_cannot_lex_are_taken_literally(arg: str, passed: str) -> None:
    from doppelkit.cli import quote_literal_values

    assert quote_literal_values(["source=slack_export", arg]) == ["source=slack_export", passed]
