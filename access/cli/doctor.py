"""`eice doctor <instance>`: run the pre-flight checks and print what would stop a tunnel."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from access.errors import AccessError, AwsError, ConfigError, InvalidInput, first_line


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check that an instance is reachable through its EC2 Instance Connect Endpoint",
        description="Check the instance, its endpoint, security groups, network ACLs, AMI, "
        "port and (with --principal) the requester's inline-policy budget. Exit 0 when "
        "nothing fails, 1 when a check fails, 2 for bad input.",
    )
    p.add_argument("instance", help="instance ID or unique Name tag")
    p.add_argument("--port", type=int, default=22)
    p.add_argument("--os-user", default="ec2-user")
    p.add_argument("--principal", help="the requester's IAM role or user ARN")
    p.add_argument("--region", help="only this region (default: the regions in the config)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_doctor)


def _fail(message: str, code: int = 2) -> int:
    print(f"eice doctor: {message}", file=sys.stderr)
    return code


def cmd_doctor(args: argparse.Namespace) -> int:
    from access.aws.calls import AWS_FAILURES, AwsClients
    from access.config.loader import load_config
    from access.preflight import render_table, run_preflight

    try:
        config = load_config()
        regions = [args.region] if args.region else list(config.aws.regions)
        report = run_preflight(
            AwsClients(),
            regions,
            args.instance,
            port=args.port,
            os_user=args.os_user,
            principal_arn=args.principal,
            overshoot_s=int(config.defaults.max_tunnel_overshoot.total_seconds()),
            allow_describe=config.defaults.allow_describe,
        )
    except (InvalidInput, ConfigError) as exc:
        return _fail(exc.message)
    except AwsError as exc:
        return _fail(exc.message, 1)
    except AccessError as exc:  # Ambiguous: the person must name the instance better
        return _fail(exc.message)
    except AWS_FAILURES as exc:
        return _fail(f"AWS call failed: {first_line(exc)}", 1)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_table(report))
    return 1 if report.failures else 0
