"""`eice migrate`, `eice policy`, `eice tick`, `eice close-grant`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from access.clock import parse_iso
from access.errors import AccessError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("migrate", help="create or upgrade the database schema (Alembic)")
    p.add_argument("--database-url", help="defaults to EICE_DATABASE_URL")
    p.set_defaults(func=cmd_migrate)

    p = subparsers.add_parser(
        "policy",
        help="print the IAM policy a grant would get (dry run, no AWS calls)",
        description="Print, as JSON on stdout, the inline policy document a grant with these "
        "parameters would be given. Nothing is sent to AWS.",
    )
    p.add_argument("--instance-id", required=True)
    p.add_argument("--endpoint-id", required=True)
    p.add_argument("--private-ip", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--account", required=True, help="12-digit AWS account ID")
    p.add_argument("--port", type=int, default=22)
    p.add_argument("--os-user", default="ec2-user", help="the OS user (as eice.toml accepts one)")
    p.add_argument("--start", help="ISO 8601 (default: now)")
    p.add_argument("--expires", required=True, help="ISO 8601")
    p.add_argument(
        "--overshoot",
        type=int,
        default=300,
        help="seconds a tunnel may outlive the grant (default 300)",
    )
    p.add_argument("--principal-arn", help="check the size against this role's or user's inline-policy limit")
    p.add_argument(
        "--allow-describe",
        action="store_true",
        help="also allow ec2:DescribeInstances / DescribeInstanceConnectEndpoints (a rule's allow_describe)",
    )
    p.add_argument(
        "--owner",
        default="",
        help="the installation ID (`eice migrate` prints it) that the bot writes into the first "
        "statement's Sid; without it the document has no owner Sid",
    )
    p.set_defaults(func=cmd_policy)

    p = subparsers.add_parser(
        "tick",
        help="reap, reconcile and collect CloudTrail once (the Slack messages this queues are "
        "delivered by the running bot); exits 1 when some of it failed and is left for the next tick",
    )
    p.add_argument("--no-reconcile", action="store_true", help="only reap")
    p.set_defaults(func=cmd_tick)

    p = subparsers.add_parser("close-grant", help="admin: close a grant IAM refuses to revoke, with a reason")
    p.add_argument("grant_id")
    p.add_argument("--admin", required=True, help="your Slack user ID (must be in [defaults].admins)")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_close_grant)


def fail(message: str, code: int = 2) -> int:
    print(f"eice: {message}", file=sys.stderr)
    return code


def cmd_migrate(args: argparse.Namespace) -> int:
    from access.migrate import current, upgrade
    from access.settings import get_settings, redact_url

    url = args.database_url or get_settings().eice_database_url
    try:
        upgrade(url)
    except Exception as exc:
        return fail(f"migration of {redact_url(url)} failed: {exc}", 1)
    from access.db import Database
    from access.installation import installation_id

    db = Database(url)
    try:
        with db.transaction() as session:
            owner = installation_id(session)
    finally:
        db.dispose()
    print(f"{redact_url(url)} is at revision {current(url)}; installation ID {owner}")
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    import re
    from datetime import UTC, datetime

    from access.aws.ec2 import INSTANCE_ID
    from access.config.model import OS_USER, PRINCIPAL_ARN, REGION
    from access.grants.policy import GrantScope, check_policy_fits, grant_policy

    checks = [
        (
            INSTANCE_ID.match(args.instance_id),
            f"--instance-id {args.instance_id!r} is not an instance ID",
        ),
        (
            re.fullmatch(r"eice-[0-9a-f]{8,17}", args.endpoint_id),
            f"--endpoint-id {args.endpoint_id!r} is not an endpoint ID",
        ),
        (
            re.fullmatch(r"\d{12}", args.account),
            f"--account {args.account!r} is not a 12-digit account ID",
        ),
        (REGION.match(args.region), f"--region {args.region!r} is not an AWS region"),
        (OS_USER.match(args.os_user), f"--os-user {args.os_user[:40]!r} is not a valid OS user name"),
        (1 <= args.port <= 65535, f"--port {args.port} is not between 1 and 65535"),
        (
            1 <= args.overshoot <= 3600,
            f"--overshoot {args.overshoot} is not between 1 and 3600 seconds (a tunnel lasts at most 1h)",
        ),
        (
            not args.principal_arn or PRINCIPAL_ARN.match(args.principal_arn),
            f"--principal-arn {str(args.principal_arn)[:80]!r} is not an IAM role or user ARN",
        ),
    ]
    for ok, message in checks:
        if not ok:
            return fail(message)
    try:
        import ipaddress

        ip = ipaddress.ip_address(args.private_ip)
        start = parse_iso(args.start) if args.start else datetime.now(UTC)
        expires = parse_iso(args.expires)
        if expires <= start:
            return fail("--expires must be after --start")
        if expires - start > timedelta(days=7):
            return fail("a grant longer than 7 days is not supported")
        scope = GrantScope(
            account_id=args.account,
            region=args.region,
            instance_id=args.instance_id,
            endpoint_id=args.endpoint_id,
            private_ip=str(ip),
            port=args.port,
            os_user=args.os_user,
            starts_at=start,
            expires_at=expires,
            overshoot_s=args.overshoot,
            allow_describe=args.allow_describe,
            owner=args.owner,
        )
        document = grant_policy(scope)
        if args.principal_arn:
            check_policy_fits(document, args.principal_arn)
    except (ValueError, AccessError) as exc:
        return fail(getattr(exc, "message", str(exc)))
    print(json.dumps(document, indent=2))
    return 0


def cmd_tick(args: argparse.Namespace) -> int:
    from access.migrate import require_current
    from access.runtime import Runtime
    from access.scheduler.tick import tick, tick_left_undone
    from access.settings import configure_logging, get_settings

    settings = get_settings()
    configure_logging(settings)
    try:
        require_current(settings.eice_database_url)
        rt = Runtime.from_settings(settings)
    except AccessError as exc:
        return fail(exc.message)
    result = tick(rt, reconcile_too=not args.no_reconcile)
    print(json.dumps(result, indent=2, default=str))
    left = tick_left_undone(result)
    if left:
        print(f"eice tick: left for the next tick: {'; '.join(left)}", file=sys.stderr)
        return 1
    return 0


def cmd_close_grant(args: argparse.Namespace) -> int:
    from access.config.permissions import Actor
    from access.grants.revoke import close_unrevocable
    from access.migrate import require_current
    from access.runtime import Runtime
    from access.settings import get_settings

    try:
        settings = get_settings()
        require_current(settings.eice_database_url)
        rt = Runtime.from_settings(settings)
        with rt.db.transaction() as session:
            grant = close_unrevocable(session, rt, args.grant_id, Actor(args.admin), reason=args.reason)
            print(f"grant {grant.id} closed by {args.admin}: {args.reason}")
    except AccessError as exc:
        return fail(exc.message)
    return 0
