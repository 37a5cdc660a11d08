"""The built-in formatters: ``chat`` (default) and ``alpaca`` (the seed's template).

Both share :mod:`~doppelkit.builtins.formatters.turns` (thread → turns, for training and
serving) and :mod:`~doppelkit.builtins.formatters.rendering` (text → ids and labels). The
engine splits a generated reply into Slack messages with :func:`split_reply`.
"""

from __future__ import annotations

from doppelkit.builtins.formatters.alpaca import AlpacaFormatter
from doppelkit.builtins.formatters.chat import ChatFormatter
from doppelkit.builtins.formatters.turns import REPLY_SEPARATOR, split_reply
from doppelkit.hookspecs import Register, hookimpl

__all__ = ["REPLY_SEPARATOR", "AlpacaFormatter", "ChatFormatter", "split_reply"]


@hookimpl
def register_formatters(register: Register) -> None:
    register(ChatFormatter)
    register(AlpacaFormatter)
