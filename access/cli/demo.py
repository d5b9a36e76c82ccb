"""`eice demo`: a whole lifecycle against the local sandbox, in under a minute."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run a whole request -> approve -> ssh -> expiry -> audit story against the sandbox",
        description="Starts the sandbox and `eice serve --http` (SQLite in a temporary folder), "
        "drives the story through the Slack stand-in and the real `eice ssh`, and prints what "
        "happened. Exits 0 only if every step behaved.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the transcript")
    p.add_argument("--html", metavar="FILE", help="also write the conversation as an HTML page")
    p.add_argument("--workdir", help="keep the database, config and bot log here")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from sandbox.demo import Step, run_demo

    def progress(step: Step) -> None:
        if not args.json:
            mark = "ok  " if step.ok else "FAIL"
            print(f"{step.at[11:23]}  {mark}  {step.name}: {step.detail}", flush=True)

    if args.html and not Path(args.html).resolve().parent.is_dir():  # found now, not after the demo
        print(
            f"eice demo: --html {args.html}: no such folder {Path(args.html).resolve().parent}",
            file=sys.stderr,
        )
        return 2
    if not args.json:
        print("eice demo: starting the sandbox and the bot (loopback only)...", flush=True)
    result = run_demo(workdir=Path(args.workdir) if args.workdir else None, progress=progress)
    page = result.pop("html")
    text = result.pop("transcript")
    if args.html:
        Path(args.html).write_text(page, encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print("\n--- what the bot posted in Slack ---\n" + text)
        verdict = "every step behaved" if result["ok"] else "SOME STEPS FAILED"
        print(f"\neice demo: {verdict}. Files in {result['workdir']}", file=sys.stderr)
    return 0 if result["ok"] else 1
