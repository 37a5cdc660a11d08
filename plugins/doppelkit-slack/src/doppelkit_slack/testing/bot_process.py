"""A bot in a process of its own, to kill: ``python -m doppelkit_slack.testing.bot_process``.

The real runtime and HTTP server (``frontend.mode=http``) with an
:class:`~doppelkit.testing.fakes.EchoEngine` whose persona ``--persona`` of ``--team`` is
trained, answering ``--messages`` (JSON list; default: echo) after ``--delay`` seconds. Prints
``listening on URL`` once it accepts requests, then serves until killed. Secrets come from
``SLACK_BOT_TOKEN`` and ``SLACK_SIGNING_SECRET``; ``--config`` adds ``frontend.*`` values (JSON).
Tests use it to kill a bot with ``SIGKILL`` mid-reply and start another on the same home.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from doppelkit.termination import sigterm_raises
    from doppelkit.testing.fakes import EchoEngine
    from doppelkit.testing.helpers import make_context
    from doppelkit_slack.bolt.config import BoltConfig
    from doppelkit_slack.bolt.runtime import build_runtime
    from doppelkit_slack.bolt.server import HttpServer, asgi_app

    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--team", default="T0001")
    parser.add_argument("--persona", default="U_ANN")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--messages", default=None)
    parser.add_argument("--config", default="{}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    messages = json.loads(args.messages) if args.messages else None
    engine = EchoEngine(versions={(args.team, args.persona): "v1"}, delay=args.delay, messages=messages)
    options = {
        "mode": "http",
        "port": 0,
        "api_url": args.api_url,
        "avatar": "none",
        **json.loads(args.config),
    }
    config = BoltConfig(**options)
    secret = os.environ["SLACK_SIGNING_SECRET"]
    context = make_context(args.home, persona=args.persona)
    token = os.environ["SLACK_BOT_TOKEN"]
    runtime = build_runtime(config, context, engine, bot_token=token, signing_secret=secret)  # type: ignore[arg-type]
    server = HttpServer(asgi_app(runtime, secret), "127.0.0.1", 0)
    print(f"listening on {server.url}{config.path}", file=sys.stderr, flush=True)
    try:
        with sigterm_raises():  # a test's terminate() stops it cleanly; SIGKILL is the crash
            server.run()
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
