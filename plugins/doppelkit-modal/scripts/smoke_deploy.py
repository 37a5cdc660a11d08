"""Real-deploy smoke test of the modal backend, for someone with a Modal account (not run in CI).

    python plugins/doppelkit-modal/scripts/smoke_deploy.py                       # engine, train, job
    python plugins/doppelkit-modal/scripts/smoke_deploy.py --store-url URL       # + the Slack endpoint

What it does, each step as a user would, under throwaway names (``doppelkit-smoke-<random>``):

1. **deploy** the app (``train``, ``job``, ``Engine``; with ``--store-url`` a PostgreSQL URL
   Modal can reach, also the ``Web`` endpoint, through ``doppelkit serve +backend=modal
   frontend=bolt`` with a throwaway Secret holding a fake bot token and a random signing secret);
2. **train** the sample persona (maya) with the tiny model on a *CPU* container through the real
   CLI, ``doppelkit +backend=modal … backend.download=true`` — ingest here, upload, train on the
   Volume, copy the adapter back;
3. **ask** the deployed ``Engine`` class one question (a cold start, then a warm one), and with
   the endpoint, ``GET /healthz`` and a signed ``url_verification`` (what Slack sends first);
4. **tear down**: stop the app, delete the Volume and the Secret (``--keep`` leaves them).

It prints the timings to copy into docs/modal.md (cold start, warm reply, training). Exit status:
0 when every step worked, 1 otherwise, 2 without Modal credentials.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

PERSONA = "maya"
TEAM, USER = "T0LANTERN1", "U0MAYA0001"  # the bundled sample workspace's IDs for maya


def doppelkit(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the real CLI; its output is shown as it comes and returned."""
    command = [sys.executable, "-m", "doppelkit.cli", *args]
    print("$ doppelkit " + " ".join(args), flush=True)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print("  " + line, end="", flush=True)
        lines.append(line)
    if process.wait() != 0:
        raise RuntimeError(f"doppelkit {args[0]} … failed with status {process.returncode}")
    return "".join(lines)


def signed_post(url: str, body: bytes, signing_secret: str) -> tuple[int, bytes]:
    stamp = str(int(time.time()))
    signature = (
        "v0=" + hmac.new(signing_secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    )
    request = urllib.request.Request(
        url,
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature,
        },
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, response.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store-url", help="a PostgreSQL URL Modal can reach: also deploy the Slack endpoint"
    )
    parser.add_argument("--environment", help="Modal environment (default: the profile's)")
    parser.add_argument("--keep", action="store_true", help="leave the app, Volume and Secret in place")
    args = parser.parse_args(argv)

    from doppelkit.errors import UserError
    from doppelkit_lora.testing import SECONDS_TO_TRAIN
    from doppelkit_modal.credentials import require_credentials

    try:
        require_credentials()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import modal

    name = f"doppelkit-smoke-{secrets.token_hex(3)}"
    signing_secret = secrets.token_hex(16)
    secret_name = f"{name}-slack"
    environment = args.environment
    common = [
        f"backend.app_name={name}",
        f"backend.volume={name}",
        "backend.train_gpu=null",
        "backend.serve_gpu=null",
        "backend.scaledown_window=60",
        *([f"backend.environment={environment}"] if environment else []),
    ]
    timings: dict[str, float] = {}
    failed = False
    home = Path(tempfile.mkdtemp(prefix="doppelkit-smoke-"))
    try:
        # 1. deploy
        started = time.perf_counter()
        url = None
        if args.store_url:
            modal.Secret.objects.create(
                secret_name,
                {
                    "SLACK_BOT_TOKEN": "xoxb-smoke-not-a-real-token",
                    "SLACK_SIGNING_SECRET": signing_secret,
                    "DOPPELKIT_STORE_URL": args.store_url,
                },
                environment_name=environment,
            )
            web = f"backend.web_secrets=[{secret_name}]"
            out = doppelkit("serve", "+backend=modal", "frontend=bolt", f"home={home}", *common, web)
            found = re.search(r"(https://\S+)/slack/events", out)
            url = found.group(1) if found else None
            if url is None:
                raise RuntimeError("serve printed no Request URL")
        else:
            deploy_engine_only([*common, "backend.web_secrets=[]"], home)
        timings["deploy (s)"] = time.perf_counter() - started

        # 2. train on a CPU container, download the adapter
        started = time.perf_counter()
        out = doppelkit(
            "+backend=modal", f"persona.user={PERSONA}", f"home={home}", "backend.download=true", *common,
            *SECONDS_TO_TRAIN,
            env={"OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        timings["ingest + upload + train + download (s)"] = time.perf_counter() - started
        if "Persona report" not in out or "copied v1" not in out:
            raise RuntimeError("the training output lacks the persona report or the download")
        if not (home / "adapters" / TEAM / USER / "CURRENT").is_file():
            raise RuntimeError("the adapter was not copied into the local home")

        # 3. ask the deployed engine class one question, cold then warm
        engine = modal.Cls.from_name(name, "Engine", environment_name=environment)()
        persona = {"team": TEAM, "user": {"id": USER, "display_name": PERSONA}}
        thread = {
            "team": TEAM,
            "channel": "C0GENERAL1",
            "ts": "1700000000.000100",
            "messages": [
                {"ts": "1700000000.000100", "user": "U0ERIK0002", "text": "how is the billing page?"}
            ],
        }
        for label in ("first reply, cold engine (s)", "second reply, warm engine (s)"):
            started = time.perf_counter()
            reply = engine.reply.remote(persona, thread, None)
            timings[label] = time.perf_counter() - started
            print(f"  maya: {' / '.join(reply)!r}")
        if engine.current_version.remote(TEAM, USER) != "v1":
            raise RuntimeError("the engine does not see v1 on the Volume")

        if url:
            started = time.perf_counter()
            with urllib.request.urlopen(url + "/healthz", timeout=120) as response:
                healthy = response.read() == b"ok"
            timings["web endpoint, first request (s)"] = time.perf_counter() - started
            challenge = json.dumps({"type": "url_verification", "challenge": "smoke"}).encode()
            status, body = signed_post(url + "/slack/events", challenge, signing_secret)
            if not healthy or status != 200 or json.loads(body).get("challenge") != "smoke":
                raise RuntimeError(f"the Slack endpoint answered {status} {body[:200]!r}")
            print("  the Slack endpoint verifies signatures and answers url_verification")
    except Exception as exc:
        failed = True
        print(f"SMOKE FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept: app, Volume {name}, Secret {secret_name}; stop with `modal app stop {name}`")
        else:
            teardown(name, secret_name, environment)
    print("\ntimings:")
    for label, seconds in timings.items():
        print(f"  {label:42} {seconds:8.1f}")
    print("SMOKE FAILED" if failed else "SMOKE OK")
    return 1 if failed else 0


def deploy_engine_only(common: list[str], home: Path) -> None:
    """The app without the Slack endpoint (no database needed): train, job and Engine."""
    from rich.console import Console

    from doppelkit import pipeline
    from doppelkit.config import compose, validate
    from doppelkit.plugins import build_registries, default_plugin_manager

    pm = default_plugin_manager()
    registries = build_registries(pm)
    run = validate(compose(["+backend=modal", f"home={home}", *common], registries), registries)
    context = pipeline.build_context(run, pm.hook, Console(), registries)
    backend: Any = pipeline.make(run["backend"], context)
    built = backend._build(None, parts=("train", "job", "engine"))
    backend.launcher.deploy(built)


def teardown(name: str, secret_name: str, environment: str | None) -> None:
    import modal

    for what, action in (
        ("app", lambda: modal.App.lookup(name, environment_name=environment).stop()),
        (
            "Volume",
            lambda: modal.Volume.objects.delete(name, allow_missing=True, environment_name=environment),
        ),
        (
            "Secret",
            lambda: modal.Secret.objects.delete(
                secret_name, allow_missing=True, environment_name=environment
            ),
        ),
    ):
        try:
            action()
            print(f"  removed the {what}")
        except Exception as exc:  # keep tearing down the rest
            print(f"  could not remove the {what} ({exc}); see `modal {what.lower()} list`", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
