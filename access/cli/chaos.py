"""`eice chaos --scenario NAME`: the reliability harness of issue 8 (loopback only)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

SCENARIOS = ("kill", "outage", "throttle", "unrevocable", "postgres-restart", "replicas", "clock", "slack")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "chaos",
        help="run the bot under one kind of fault against the sandbox and check the invariants",
        description="Runs `eice serve` as real processes against the AWS and Slack sandboxes and a "
        "database, injects one kind of fault, finishes every lifecycle, reconciles once and checks: "
        "revoked on time, IAM matches the grants, one grant and one put per approved request, no "
        "backward moves, audit complete and its chain verifying. Exits 1 when an invariant breaks.",
    )
    p.add_argument("--scenario", required=True, choices=SCENARIOS)
    p.add_argument("--lifecycles", type=int, help="grants to run (scenario default: the issue's size)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help='print {"scenario", "ok", "invariants", "figures"}')
    p.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        help="the bot's database (default sqlite; replicas and postgres-restart need postgres)",
    )
    p.add_argument("--duration", type=float, help="seconds of fault (throttle, replicas, postgres-restart)")
    p.add_argument("--restart-delay", type=float, help="kill: longest wait before a restart, s (default 30)")
    p.add_argument("--kills-per-point", type=int, help="kill: kills at each failpoint (default 20)")
    p.add_argument("--workdir", type=Path, help="keep logs and the SQLite file here (default: a temp dir)")
    p.add_argument(
        "--postgres-url",
        help="server for the throwaway database (default EICE_CHAOS_POSTGRES_URL; "
        "postgres-restart starts a cluster of its own instead)",
    )
    p.set_defaults(func=cmd_chaos)


def _bad(value: float | None, name: str) -> str | None:
    return f"{name} must be positive" if value is not None and value <= 0 else None


def cmd_chaos(args: argparse.Namespace) -> int:
    from access.chaos.scenarios import execute, scenario
    from access.chaos.scenarios.base import ChaosOptions

    chosen = scenario(args.scenario)
    problem = (
        _bad(args.lifecycles, "--lifecycles")
        or _bad(args.duration, "--duration")
        or (_bad(args.kills_per_point, "--kills-per-point") if args.kills_per_point != 0 else None)
        or ("--restart-delay must not be negative" if (args.restart_delay or 0) < 0 else None)
        or (
            f"{args.scenario} runs on {chosen.database} only (drop --database {args.database})"
            if chosen.database and args.database and args.database != chosen.database
            else None
        )
        or (
            f"{args.scenario} starts a PostgreSQL cluster of its own: --postgres-url does not apply"
            if chosen.private_postgres and args.postgres_url
            else None
        )
    )
    if problem:
        print(f"eice chaos: {problem}", file=sys.stderr)
        return 2
    opts = ChaosOptions(
        lifecycles=args.lifecycles,
        seed=args.seed,
        database=args.database or chosen.database or "sqlite",
        duration_s=args.duration,
        restart_delay_s=args.restart_delay,
        kills_per_point=args.kills_per_point,
        workdir=args.workdir,
        postgres_url=args.postgres_url,
    )
    # SIGTERM (a CI timeout, `kill`) ends the run as Ctrl-C does: the throwaway database,
    # the private cluster, the bot processes and the temporary folder are all cleaned up.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    result = execute(args.scenario, opts)
    if args.json:
        print(json.dumps(result.as_json(), indent=2, default=str))
    else:
        print(render(result.as_json()))
    return 0 if result.ok else 1


def render(answer: dict[str, Any]) -> str:
    """A readable table of the invariants and figures."""
    lines = [f"eice chaos {answer['scenario']}: {'OK' if answer['ok'] else 'FAILED'}", "", "invariant"]
    width = max(len(k) for k in [*answer["invariants"], *answer["figures"]]) + 2
    for name, held in answer["invariants"].items():
        lines.append(f"  {name:<{width}}{'ok' if held else 'BROKEN'}")
        for problem in answer.get("problems", {}).get(name, [])[:5]:
            lines.append(f"      {problem}")
    lines += ["", "figure"]
    for name, value in answer["figures"].items():
        lines.append(f"  {name:<{width}}{value}")
    return "\n".join(lines)
