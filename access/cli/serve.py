"""`eice serve`: the long-running bot (Socket Mode, or HTTP with `--http`)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

log = logging.getLogger("eice.serve")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the Slack bot with its scheduler (Socket Mode, or HTTP with --http)",
        description="Socket Mode when SLACK_APP_TOKEN is set and --http is not given (GET /healthz "
        "and GET /metrics on --host:--port); otherwise HTTP on waitress: POST /slack/events, "
        "GET /healthz, GET /metrics.",
    )
    p.add_argument("--http", action="store_true", help="serve HTTP instead of Socket Mode")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000, help="HTTP port (in Socket Mode: health and metrics)")
    p.add_argument("--threads", type=int, default=16, help="waitress worker threads")
    p.add_argument(
        "--command-workers",
        type=int,
        default=None,
        metavar="N",
        help="processes that run /eice commands after the ack (default EICE_COMMAND_WORKERS, 2; "
        "0 runs them on threads of the server)",
    )
    p.add_argument("--migrate", action="store_true", help="upgrade the schema before serving")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    # The Slack layer is imported here, never at module import: `access/` stays Slack-free.
    from access.errors import AccessError, InvalidInput
    from access.runtime import Runtime
    from access.settings import configure_logging, get_settings

    settings = get_settings()
    configure_logging(settings)
    try:
        from bot.server import (
            Service,
            check_migrations,
            check_tokens,
            serve_http,
            serve_socket,
        )

        check_migrations(settings.eice_database_url, upgrade=args.migrate)
        if args.command_workers is not None and not 0 <= args.command_workers <= 32:
            raise InvalidInput(f"--command-workers must be between 0 and 32, not {args.command_workers}")
        _can_listen(args.host, args.port)
        if settings.eice_config is None:
            log.warning(
                "EICE_CONFIG is not set: built-in defaults, with no approvers and no channels "
                "(nobody can approve a request)"
            )
        rt = Runtime.from_settings(settings)
        check_tokens(settings, socket_mode=not args.http)
        service = Service(rt, settings, command_workers=args.command_workers)
        service.start()
        if args.http or settings.slack_app_token is None:
            serve_http(service, host=args.host, port=args.port, threads=args.threads)
        else:
            serve_socket(service, host=args.host, port=args.port)
    except AccessError as exc:
        print(f"eice serve: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _can_listen(host: str, port: int) -> None:
    """Refuse a taken port before anything starts (the scheduler would already be revoking)."""
    import socket

    from access.errors import InvalidInput

    if port == 0:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
