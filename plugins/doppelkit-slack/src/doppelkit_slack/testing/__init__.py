"""Public test tooling for code that talks to Slack (importable by third-party plugins).

Everything a test usually needs is importable from here::

    from doppelkit_slack.testing import FakeSlack, EventSender, app_mention

==========================  =================================================================
module                      what it holds
==========================  =================================================================
``fake_slack``              :class:`FakeSlack`: the Slack Web API on loopback (rate limits,
                            capped pages, scopes, injected faults, recorded calls and posts)
``fake_oauth``              :class:`FakeOAuth`: Slack's side of the OAuth install (consent
                            page, ``oauth.v2.access``, per-team and rotating tokens) and a
                            :class:`Browser` that keeps the state cookie
``fake_socket_mode``        :class:`FakeSocketMode`: Slack's Socket Mode WebSocket (hello,
                            envelopes, acks by ``envelope_id``, ``disconnect``) for slack_sdk's
                            real ``SocketModeClient``
``fake_workspace``          :class:`FakeWorkspace`: the in-memory workspace behind it, seeded
                            from an export or built by hand (``Conversation``, ``BotIdentity``)
``events``                  Slack calling the app: signed events and slash commands
                            (:class:`EventSender`, :func:`app_mention`, …)
``bolt``                    driving the bot: :func:`run_socket_mode_request` (one Socket Mode
                            envelope), :func:`wait_idle` (queued replies and deletions done)
``synthetic``               large synthetic exports for benchmarks and load tests
                            (``python -m doppelkit_slack.testing.synthetic OUT --messages N``)
==========================  =================================================================

Nothing in the plugin's production code imports this package.
"""

from doppelkit_slack.testing.bolt import run_socket_mode_request, wait_idle
from doppelkit_slack.testing.events import (
    EventSender,
    Response,
    app_mention,
    block_action,
    channel_message,
    event_envelope,
    sign,
    slash_command,
)
from doppelkit_slack.testing.fake_oauth import Browser, FakeOAuth
from doppelkit_slack.testing.fake_slack import DEFAULT_TOKEN, Call, FakeSlack, Fault
from doppelkit_slack.testing.fake_socket_mode import FakeSocketMode
from doppelkit_slack.testing.fake_workspace import BotIdentity, Conversation, FakeWorkspace, Post, SlackError

__all__ = [
    "DEFAULT_TOKEN",
    "BotIdentity",
    "Browser",
    "Call",
    "Conversation",
    "EventSender",
    "FakeOAuth",
    "FakeSlack",
    "FakeSocketMode",
    "FakeWorkspace",
    "Fault",
    "Post",
    "Response",
    "SlackError",
    "app_mention",
    "block_action",
    "channel_message",
    "event_envelope",
    "run_socket_mode_request",
    "sign",
    "slash_command",
    "wait_idle",
]
