"""`python -m sandbox.aws [--port N] [--seed]`: run the AWS sandbox in the foreground.

Prints one JSON line {"url": ..., "env": {...}} (plus "estate" with --seed) once ready.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from sandbox.aws.seed import seed_estate
from sandbox.aws.server import AwsSandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.aws")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--cloudtrail-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--seed", action="store_true", help="build the demo estate")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sandbox = AwsSandbox(port=args.port, region=args.region, cloudtrail_delay_s=args.cloudtrail_delay).start()
    try:
        ready: dict = {"url": sandbox.url, "env": sandbox.env()}
        if args.seed:
            ready["estate"] = seed_estate(sandbox, region=args.region).to_dict()
        print(json.dumps(ready), flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
