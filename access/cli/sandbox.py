"""`eice sandbox`: every local stand-in, seeded, until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sandbox",
        help="run local stand-ins for AWS and Slack (loopback only) until interrupted",
        description="Start moto with the EICE parts, the OpenTunnel and SendSSHPublicKey "
        "stand-ins, an SSH server per instance and the Slack Web API stand-in; seed a small "
        "estate; print the environment that points `eice serve` and `eice ssh` at it.",
    )
    p.add_argument("--workdir", help="where to write eice.toml, the database and TLS files")
    p.add_argument("--tls", action="store_true", help="serve OpenTunnel over wss:// with a sandbox CA")
    p.add_argument(
        "--cloudtrail-delay",
        type=float,
        default=0.0,
        help="seconds before events show in LookupEvents",
    )
    p.set_defaults(func=cmd_sandbox)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox.stack import SandboxStack

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="eice-sandbox-"))
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"eice sandbox: --workdir {workdir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stack = SandboxStack(workdir=workdir, tls=args.tls, cloudtrail_delay_s=args.cloudtrail_delay)
    stack.start()
    try:
        db = f"sqlite:///{workdir / 'eice.sqlite'}"
        print("# eice sandbox is running (loopback only). For the bot:")
        for key, value in sorted(stack.bot_env(db).items()):
            print(f"export {key}={shlex.quote(value)}")
        print("\n# then: eice migrate && eice serve --http --port 3000")
        print("# For `eice ssh` as alice, use her role's credentials:")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            print(f"#   {key}={shlex.quote(stack.user_env('alice')[key])}")
        print(
            f"\n# Slack stand-in (transcript at {stack.slack.url}/transcript.txt), Ctrl-C to stop",
            flush=True,
        )
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    finally:
        stack.stop()
    return 0
