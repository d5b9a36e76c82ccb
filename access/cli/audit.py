"""`eice audit [--instance] [--user] [--grant] [--since] [--format]` and `eice audit verify`."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `audit` command and its nested `verify`."""
    p = subparsers.add_parser(
        "audit",
        help="who reached which instance, when, approved by whom (and `verify` the log)",
        description="List grants with their approvers, window and the EICE connections "
        "CloudTrail saw; or `eice audit verify` to check the hash-chained audit log.",
    )
    p.add_argument("--instance", help="an instance ID (i-...)")
    p.add_argument("--user", help="a requester's Slack user ID or an IAM principal ARN")
    p.add_argument("--grant", help="a grant ID (g-...)")
    p.add_argument("--since", default="7d", help="how far back, e.g. 24h or 30d (default 7d)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--limit", type=int, default=50, help="grants to show (default 50)")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--database-url", help="defaults to EICE_DATABASE_URL")
    p.set_defaults(func=cmd_audit)
    nested = p.add_subparsers(dest="audit_command", metavar="{verify}")
    v = nested.add_parser(
        "verify",
        help="check the audit log's hash chain; exit 1 naming the first bad row",
    )
    v.add_argument(
        "--head", type=_chain_hash, help="a chain head a witness saw (hash); it must still be there"
    )
    v.add_argument(
        "--at-row",
        type=_row_number,
        help="the row --head belongs to (the audit channel's post names it); without it, "
        "--head must be the last row",
    )
    v.add_argument("--database-url", help="defaults to EICE_DATABASE_URL")
    v.set_defaults(func=cmd_verify)


def _chain_hash(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not a chain hash (64 lowercase hex digits)")
    return text


def _row_number(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a row number (1 or more)")
    return int(text)


def _database(args: argparse.Namespace) -> Any:
    """The bot's database, once it is known to exist at the newest revision (else ConfigError)."""
    from access.db import Database
    from access.migrate import require_current
    from access.settings import get_settings

    url = args.database_url or get_settings().eice_database_url
    require_current(url)
    return Database(url)


def cmd_audit(args: argparse.Namespace) -> int:
    from access.audit.export import to_csv, to_json, to_table
    from access.audit.queries import audit_query, out_of_band_events
    from access.aws.ec2 import INSTANCE_ID
    from access.clock import SystemClock
    from access.config.model import PRINCIPAL_ARN, SLACK_USER
    from access.durations import parse_duration
    from access.errors import InvalidInput
    from access.ids import GRANT_REF

    try:
        since = SystemClock().now() - parse_duration(args.since)
    except InvalidInput as exc:
        print(f"eice: --since: {exc.message}", file=sys.stderr)
        return 2
    problems = [
        (args.limit < 1, "--limit must be at least 1"),
        (args.offset < 0, "--offset cannot be negative"),
        (
            args.instance is not None and not INSTANCE_ID.match(args.instance),
            f"--instance {str(args.instance)[:40]!r} is not an instance ID (i-...)",
        ),
        (
            args.grant is not None and not GRANT_REF.match(args.grant),
            f"--grant {str(args.grant)[:40]!r} is not a grant ID (g-...)",
        ),
        (
            args.user is not None and not (SLACK_USER.fullmatch(args.user) or PRINCIPAL_ARN.match(args.user)),
            f"--user {str(args.user)[:80]!r} is neither a Slack user ID (U...) nor an IAM principal ARN",
        ),
    ]
    for bad, message in problems:
        if bad:
            print(f"eice: {message}", file=sys.stderr)
            return 2
    db = _database(args)
    try:
        with db.transaction() as session:
            results = audit_query(
                session,
                since=since,
                instance_id=args.instance,
                user_id=args.user,
                grant_id=args.grant,
                limit=args.limit,
                offset=args.offset,
            )
            strays = []
            if not args.grant and (args.instance or not args.user):
                strays = out_of_band_events(session, since=since, instance_id=args.instance, limit=args.limit)
            elif args.user and args.user.startswith("arn:"):
                strays = out_of_band_events(session, since=since, principal_arn=args.user, limit=args.limit)
    finally:
        db.dispose()
    if args.format == "json":
        print(to_json(results, strays))
    elif args.format == "csv":
        sys.stdout.write(to_csv(results, strays))
    else:
        print(to_table(results, strays))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from access.audit.service import verify_chain

    if args.at_row is not None and args.head is None:
        print("eice: audit verify: --at-row names the row of a --head; give both", file=sys.stderr)
        return 2
    db = _database(args)
    try:
        with db.transaction() as session:
            result = verify_chain(session, expected_head=args.head, head_seq=args.at_row)
    finally:
        db.dispose()
    if result.ok:
        print(f"OK: {result.rows} rows, head {result.head}")
        return 0
    where = f"row {result.first_bad_seq}: " if result.first_bad_seq is not None else ""
    print(f"FAILED: {where}{result.problem} (checked {result.rows} rows)", file=sys.stderr)
    return 1
