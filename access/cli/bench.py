"""`eice bench NAME`: one benchmark against the sandbox, its baseline in the same run."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from access.tunnel.bench import SIZE_MB

BENCHMARKS = ("ack", "tunnel", "audit", "revoke", "catch-up", "lifecycle")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="run a benchmark against the local sandbox (loopback only)",
        description="Benchmarks: ack (Slack ack latency vs a bare Bolt app), tunnel (throughput "
        "and RTT through the tunnel vs direct TCP), audit (/eice audit query latency at size), "
        "revoke (revocation lag of a storm of expiring grants on SQLite and PostgreSQL), "
        "catch-up (overdue grants revoked at start-up before any request), "
        "lifecycle (request -> approve -> grant -> revoke per second through Slack).",
    )
    p.add_argument("name", choices=BENCHMARKS)
    p.add_argument("--json", action="store_true", help='print one object: {"benchmark", "figures", "ratios"}')
    p.add_argument("--n", type=int, default=1000, help="ack: commands per server (default 1000)")
    p.add_argument("--concurrency", type=int, default=8, help="ack: commands in flight")
    p.add_argument("--rate", type=float, default=10.0, help="ack: commands per second (Poisson arrivals)")
    p.add_argument(
        "--sandbox-priority",
        choices=("idle", "normal"),
        default="idle",
        help="ack: the AWS and Slack stand-ins' CPU priority; idle (default) leaves the servers the "
        "CPU, as AWS and Slack on other machines do; normal makes them compete as equals",
    )
    p.add_argument("--rounds", type=int, default=10, help="ack: alternating bot/bare rounds")
    p.add_argument("--size-mb", type=int, default=SIZE_MB, help=f"tunnel: MiB echoed per round ({SIZE_MB})")
    p.add_argument("--rtt-samples", type=int, default=500, help="tunnel: round trips to time")
    p.add_argument("--rows", type=int, default=1_000_000, help="audit: audit rows")
    p.add_argument(
        "--grants", type=int, default=None, help="audit: grants (100000); revoke: grants per database (10000)"
    )
    p.add_argument("--queries", type=int, default=300, help="audit: queries to time")
    p.add_argument("--window-s", type=float, default=None, help="revoke (60), catch-up (10): expiry window")
    p.add_argument(
        "--db", choices=("both", "sqlite", "postgres"), default="both", help="revoke: databases to run on"
    )
    p.add_argument("--ack-rate", type=float, default=2.0, help="revoke: commands per second during the storm")
    p.add_argument(
        "--overdue", type=int, default=1000, help="catch-up: grants that expire while the bot is down"
    )
    p.add_argument("--lifecycles", type=int, default=200, help="lifecycle: full lifecycles to run")
    p.add_argument("--workers", type=int, default=4, help="lifecycle: lifecycles in flight")
    p.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "EICE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="audit, revoke: server for a throwaway database ('' to skip PostgreSQL)",
    )
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name == "ack":
        from bot.bench_ack import bench_ack

        result = bench_ack(
            args.n,
            args.concurrency,
            False,
            rate=args.rate,
            rounds=args.rounds,
            sandbox_idle=args.sandbox_priority == "idle",
        )
    elif args.name == "tunnel":
        from access.tunnel.bench import bench_tunnel

        result = bench_tunnel(False, args.size_mb, args.rtt_samples)
    elif args.name == "audit":
        from access.audit.bench import bench_audit

        grants = 100_000 if args.grants is None else args.grants
        result = bench_audit(args.rows, grants, args.queries, args.postgres_url or None)
    else:
        from access.errors import InvalidInput

        try:
            result = _scale_bench(args)
        except InvalidInput as exc:
            print(f"eice bench: {exc.message}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


def _scale_bench(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmarks at scale (access/bench); flags are checked here so bad input runs nothing."""
    from access.errors import InvalidInput

    if args.name == "revoke":
        from access.bench.revoke import bench_revoke

        grants = 10_000 if args.grants is None else args.grants
        window = 60.0 if args.window_s is None else args.window_s
        if grants < 1 or window <= 0 or args.ack_rate <= 0:
            raise InvalidInput("--grants, --window-s and --ack-rate must be positive")
        if args.db == "postgres" and not args.postgres_url:
            raise InvalidInput("--db postgres needs --postgres-url")
        kinds = ("sqlite", "postgres") if args.db == "both" else (args.db,)
        if not args.postgres_url:
            kinds = ("sqlite",)
        return bench_revoke(
            grants, window, postgres_url=args.postgres_url or None, ack_rate=args.ack_rate, kinds=kinds
        )
    if args.name == "catch-up":
        from access.bench.catchup import bench_catch_up

        window = 10.0 if args.window_s is None else args.window_s
        if args.overdue < 1 or window <= 0:
            raise InvalidInput("--overdue and --window-s must be positive")
        return bench_catch_up(args.overdue, window)
    from access.bench.lifecycle import bench_lifecycle
    from bot.actions import Action

    if args.lifecycles < 1 or args.workers < 1:
        raise InvalidInput("--lifecycles and --workers must be positive")
    return bench_lifecycle(args.lifecycles, args.workers, actions=(Action.APPROVE, Action.REVOKE))


def print_table(result: dict[str, Any]) -> None:
    print(f"benchmark: {result['benchmark']}")
    for name, value in result.get("figures", {}).items():
        shown = "-" if value is None else value
        print(f"  {name:<28} {shown:>12.3f}" if isinstance(shown, float) else f"  {name:<28} {shown!s:>12}")
    for name, value in result.get("ratios", {}).items():
        print(f"  ratio {name:<22} {value:>12.3f}")
