"""`eice bench NAME`: one benchmark against the sandbox, its baseline in the same run."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

BENCHMARKS = ("ack", "tunnel", "audit")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="run a benchmark against the local sandbox (loopback only)",
        description="Benchmarks: ack (Slack ack latency vs a bare Bolt app), tunnel (throughput "
        "and RTT through the tunnel vs direct TCP), audit (/eice audit query latency at size).",
    )
    p.add_argument("name", choices=BENCHMARKS)
    p.add_argument("--json", action="store_true", help='print one object: {"benchmark", "figures", "ratios"}')
    p.add_argument("--n", type=int, default=300, help="ack: commands per server (default 300)")
    p.add_argument("--concurrency", type=int, default=8, help="ack: commands in flight")
    p.add_argument("--size-mb", type=int, default=50, help="tunnel: bytes to push, MiB")
    p.add_argument("--rtt-samples", type=int, default=500, help="tunnel: round trips to time")
    p.add_argument("--rows", type=int, default=1_000_000, help="audit: audit rows")
    p.add_argument("--grants", type=int, default=100_000, help="audit: grants")
    p.add_argument("--queries", type=int, default=300, help="audit: queries to time")
    p.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "EICE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="audit: server for a throwaway database ('' to skip PostgreSQL)",
    )
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name == "ack":
        from bot.bench_ack import bench_ack

        result = bench_ack(args.n, args.concurrency, False)
    elif args.name == "tunnel":
        from access.tunnel.bench import bench_tunnel

        result = bench_tunnel(False, args.size_mb, args.rtt_samples)
    else:
        from access.audit.bench import bench_audit

        result = bench_audit(args.rows, args.grants, args.queries, args.postgres_url or None)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


def print_table(result: dict[str, Any]) -> None:
    print(f"benchmark: {result['benchmark']}")
    for name, value in result.get("figures", {}).items():
        print(f"  {name:<28} {value:>12.3f}" if isinstance(value, float) else f"  {name:<28} {value:>12}")
    for name, value in result.get("ratios", {}).items():
        print(f"  ratio {name:<22} {value:>12.3f}")
