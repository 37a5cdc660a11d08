"""Small in-memory conversations for formatter, trainer and frontend tests.

``sample_thread()`` is a thread with a bit of everything a formatter must handle: a mention of
the persona, a join event, a bot, a multi-message persona reply, a reply too short to count,
mrkdwn links and entities. ``long_thread(n)`` is a synthetic n-message thread for timing.
"""

from __future__ import annotations

from doppelkit.models import Message, Persona, Thread, User

TEAM = "T0TEST"
PERSONA_ID = "U0ERIK"
ANN, BOB, BOT = "U0ANN", "U0BOB", "U0BOT"
USER_LABELS = {ANN: "Ann", BOB: "Bob", BOT: "deploybot"}


def sample_persona() -> Persona:
    return Persona(team=TEAM, user=User(id=PERSONA_ID, name="erik", display_name="Erik"))


def message(ts: float, user: str | None, text: str, **fields: object) -> Message:
    return Message.model_validate({"ts": f"{ts:.6f}", "user": user, "text": text, **fields})


def sample_thread() -> Thread:
    messages = [
        message(100, ANN, f"hey <@{PERSONA_ID}>, did the deploy go out? &lt;fingers crossed&gt;"),
        message(101, BOB, f"<@{BOB}> has joined the channel", subtype="channel_join"),
        message(102, BOT, "Deploy #42 finished: SECRET BOT TEXT", is_bot=True, subtype="bot_message"),
        message(103, PERSONA_ID, "yes, it went out an hour ago, see <https://ci.example.com/42|the run>"),
        message(104, PERSONA_ID, "everything is green &amp; the error rate is flat :tada:"),
        message(105, BOB, "nice! any gotchas for the migration?"),
        message(106, PERSONA_ID, "ok"),
        message(107, ANN, f"<@{PERSONA_ID}> what about the migration itself?"),
        message(108, PERSONA_ID, "running now; it should take about twenty minutes, I will post here"),
    ]
    return Thread(
        team=TEAM,
        channel="C0GENERAL",
        channel_name="general",
        ts=messages[0].ts,
        messages=messages,
        user_labels=dict(USER_LABELS),
        platform="Slack",
    )


def long_thread(n: int, *, persona_every: int = 3) -> Thread:
    """``n`` messages; every ``persona_every``-th is a qualifying persona reply."""
    messages = []
    for i in range(n):
        if i % persona_every == persona_every - 1:
            text = f"reply {i}: here is a reasonably long answer from the persona about item {i}"
            messages.append(message(1000 + i, PERSONA_ID, text))
        else:
            author = ANN if i % 2 else BOB
            messages.append(
                message(1000 + i, author, f"question {i} about <@{PERSONA_ID}>'s plan &amp; more")
            )
    return Thread(
        team=TEAM,
        channel="C0LONG",
        channel_name="long",
        ts=messages[0].ts,
        messages=messages,
        user_labels=dict(USER_LABELS),
        platform="Slack",
    )
