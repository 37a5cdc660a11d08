"""Time-gap sessions and user labels: the stream transforms ingest applies before formatting."""

from __future__ import annotations

from doppelkit.models import Message, Thread, User, Workspace
from doppelkit.testing.samples import message
from doppelkit.threads import group_sessions, with_user_labels


def lone(ts: float, channel: str = "C0A", user: str = "U0ANN", text: str = "hi") -> Thread:
    m = message(ts, user, text)
    return Thread(team="T0TEST", channel=channel, ts=m.ts, messages=[m])


def threaded(ts: float, channel: str = "C0A") -> Thread:
    root = message(ts, "U0ANN", "root", thread_ts=f"{ts:.6f}")
    reply = message(ts + 1, "U0BOB", "reply", thread_ts=f"{ts:.6f}")
    return Thread(team="T0TEST", channel=channel, ts=root.ts, messages=[root, reply])


def shape(threads: list[Thread]) -> list[tuple[str, str, list[float]]]:
    return [(t.kind, t.channel, [m.ts_key for m in t.messages]) for t in threads]


def test_lone_messages_within_the_gap_form_one_session() -> None:
    out = list(group_sessions([lone(0), lone(60), lone(299 + 60), lone(10_000)], gap_minutes=5))
    assert shape(out) == [("session", "C0A", [0, 60, 359]), ("thread", "C0A", [10_000])]
    assert out[0].ts == out[0].messages[0].ts


def test_sessions_never_cross_channels() -> None:
    out = list(group_sessions([lone(0, "C0A"), lone(10, "C0B"), lone(20, "C0B")], gap_minutes=5))
    assert shape(out) == [("thread", "C0A", [0]), ("session", "C0B", [10, 20])]


def test_threads_with_replies_pass_through_and_do_not_break_a_session() -> None:
    out = list(group_sessions([lone(0), threaded(30), lone(60)], gap_minutes=5))
    assert shape(out) == [("thread", "C0A", [30, 31]), ("session", "C0A", [0, 60])]


def test_out_of_order_timestamps_start_a_new_session() -> None:
    out = list(group_sessions([lone(100), lone(50)], gap_minutes=5))
    assert shape(out) == [("thread", "C0A", [100]), ("thread", "C0A", [50])]


def test_a_session_merges_user_labels_and_privacy() -> None:
    a = lone(0).model_copy(update={"user_labels": {"U0ANN": "Ann"}})
    b = lone(1, user="U0BOB").model_copy(update={"user_labels": {"U0BOB": "Bob"}, "private": True})
    (session,) = group_sessions([a, b], gap_minutes=1)
    assert session.user_labels == {"U0ANN": "Ann", "U0BOB": "Bob"}
    assert session.private


def test_grouping_streams() -> None:
    def endless():  # type: ignore[no-untyped-def]
        ts = 0
        while True:
            yield lone(ts)
            ts += 1000  # every message its own conversation

    stream = group_sessions(endless(), gap_minutes=1)
    assert [next(stream).messages[0].ts_key for _ in range(3)] == [0, 1000, 2000]


def test_user_labels_come_from_the_workspace_for_authors_and_mentions() -> None:
    workspace = Workspace(
        team="T0TEST",
        users=[
            User(id="U0ANN", display_name="Ann"),
            User(id="U0BOB", real_name="Bob B"),
            User(id="U0CAT", name="cat"),
            User(id="U0NOTHERE", display_name="Nope"),
        ],
    )
    thread = Thread(
        team="T0TEST",
        channel="C0A",
        ts="1.0",
        messages=[Message(ts="1.0", user="U0ANN", text="ping <@U0BOB> and <@U0CAT|cat>")],
        user_labels={"U0ANN": "Ann from the source"},
    )
    (labelled,) = with_user_labels([thread], workspace)
    assert labelled.user_labels == {"U0ANN": "Ann from the source", "U0BOB": "Bob B", "U0CAT": "cat"}
