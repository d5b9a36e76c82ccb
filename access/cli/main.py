"""Entry point of the `eice` command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from access.errors import AccessError

# Each module exposes `register(subparsers)` and sets `func` on the parsers it adds.
# Imported lazily by name so that `eice --help` stays fast and a broken optional
# part does not take the whole CLI down.
COMMAND_MODULES = (
    "access.cli.core",
    "access.cli.tunnel",
    "access.cli.audit",
    "access.cli.doctor",
    "access.cli.serve",
    "access.cli.sandbox",
    "access.cli.demo",
    "access.cli.bench",
    "access.cli.chaos",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command group that is installed."""
    parser = argparse.ArgumentParser(
        prog="eice",
        description="Just-in-time SSH access to private EC2 instances through EC2 Instance "
        "Connect Endpoint, approved in Slack.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `eice` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    from sqlalchemy.exc import SQLAlchemyError

    from access.db import db_error_line

    try:
        result = func(args)
        sys.stdout.flush()  # a closed pipe is found here, not at exit
    except AccessError as exc:
        print(f"eice {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:  # the database went away mid-command, or refused a query
        print(f"eice {args.command}: database error: {db_error_line(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `eice audit | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # what a shell shows for a writer ended by SIGPIPE
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
