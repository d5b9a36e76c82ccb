"""`eice tunnel` and `eice ssh`: reach an instance through its EC2 Instance Connect Endpoint."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from access.aws.calls import AWS_FAILURES
from access.clock import SystemClock, parse_iso
from access.errors import AccessError, first_line
from access.tunnel.client import SHUTDOWN_TIMEOUT_S, TunnelSettings, run, run_stdio, serve_local_port
from access.tunnel.duration import max_tunnel_duration
from access.tunnel.ssh import run_ssh
from access.tunnel.target import resolve_target


def _session(region: str | None) -> Any:
    """A boto3 session in `region`, else `AWS_REGION` (which boto3 itself does not read, but
    other AWS SDKs and the bot do), else botocore's own chain (`AWS_DEFAULT_REGION`, profile)."""
    import boto3

    return boto3.Session(region_name=region or os.environ.get("AWS_REGION") or None)


def _port(lowest: int) -> Callable[[str], int]:
    """An argparse `type` for a TCP port: ASCII digits between `lowest` and 65535."""
    zero = " (any free port)" if lowest == 0 else ""

    def port(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or not lowest <= int(text) <= 65535:
            raise argparse.ArgumentTypeError(f"{text[:20]!r} is not between {lowest}{zero} and 65535")
        return int(text)

    return port


def _at_least_one(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} must be a whole number, at least 1")
    return int(text)


def _iso(text: str) -> datetime:
    try:
        return parse_iso(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tunnel_seconds(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 3600:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not between 1 and 3600 seconds")
    return int(text)


def _add_target_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("instance", help="instance id (i-...) or Name tag")
    _add_target_options(parser)


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region (default: the standard chain)")
    parser.add_argument("--endpoint-id", help="EC2 Instance Connect Endpoint id (eice-...)")
    parser.add_argument("--dns-name", help="the endpoint's DnsName (skips the lookup)")
    parser.add_argument("--private-ip", help="the instance's private IP (skips the lookup)")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--expires", type=_iso, help="grant expiry (ISO 8601); bounds maxTunnelDuration")
    window.add_argument("--max-tunnel-duration", type=_tunnel_seconds, metavar="S", help="1..3600 seconds")


def _add_tunnel_flags(parser: argparse.ArgumentParser) -> None:
    _add_target_flags(parser)
    parser.add_argument("--remote-port", type=_port(1), default=22)
    parser.add_argument("--local-port", type=_port(0), help="listen here instead of stdin/stdout")
    parser.add_argument("--max-connections", type=_at_least_one, default=10, metavar="N")


def register(subparsers: Any) -> None:
    """Add `tunnel` and `ssh` to the `eice` command."""
    tunnel = subparsers.add_parser(
        "tunnel",
        help="open a tunnel to an instance (stdin/stdout, or --local-port)",
        description="Open an OpenTunnel WebSocket to an instance's port through its endpoint.",
    )
    _add_tunnel_flags(tunnel)
    tunnel.set_defaults(func=tunnel_command)

    ssh = subparsers.add_parser(
        "ssh",
        help="ssh to an instance with a one-off key",
        description="Push an ephemeral key with SendSSHPublicKey and run ssh through a tunnel. "
        "Anything after `--` is the remote command.",
    )
    ssh.add_argument("instance", help="instance id (i-...) or Name tag")
    _add_ssh_options(ssh)
    # argparse cannot mix options after a positional with `-- command`: take the rest
    # raw and sort it out in ssh_command.
    ssh.add_argument("rest", nargs=argparse.REMAINDER, help="[options] [-- remote command]")
    ssh.set_defaults(func=ssh_command, ssh_option=[])


def _add_ssh_options(parser: argparse.ArgumentParser) -> None:
    _add_target_options(parser)
    parser.add_argument("--os-user", default="ec2-user")
    parser.add_argument(
        "--port", type=_port(1), default=22, help="the instance's SSH port (the grant's; default 22)"
    )
    parser.add_argument("-o", "--ssh-option", action="append", metavar="OPTION")


def _split_rest(args: argparse.Namespace) -> list[str]:
    """Parse options that came after the instance into `args`; return the remote command."""
    rest = list(args.rest)
    if "--" in rest:
        index = rest.index("--")
        options, command = rest[:index], rest[index + 1 :]
    else:
        options, command = rest, []
    late = argparse.ArgumentParser(prog="eice ssh", argument_default=argparse.SUPPRESS, add_help=False)
    _add_ssh_options(late)
    _, unknown = late.parse_known_args(options, namespace=args)
    if unknown and "--" in rest:
        raise ValueError(f"unrecognised arguments: {' '.join(unknown)}")
    return unknown + command


def _prepare(args: argparse.Namespace, remote_port: int) -> tuple[Any, TunnelSettings]:
    """The session and the tunnel's settings. Refused at once, before any lookup, when no
    `maxTunnelDuration` could be sent now (a bad value, or a grant already over)."""
    session = _session(args.region)
    expires_at = _expires(args)
    max_tunnel_duration(expires_at=expires_at, seconds=args.max_tunnel_duration, now=SystemClock().now())
    target = resolve_target(
        session,
        args.instance,
        remote_port=remote_port,
        endpoint_id=args.endpoint_id,
        dns_name=args.dns_name,
        private_ip=args.private_ip,
    )
    settings = TunnelSettings(
        target=target,
        credentials_provider=session.get_credentials,
        max_tunnel_duration=args.max_tunnel_duration,
        expires_at=expires_at,
    )
    return session, settings


def _expires(args: argparse.Namespace) -> datetime | None:
    expires: datetime | None = args.expires  # parsed by argparse (`_iso`)
    return expires


async def _until_terminated(main: Coroutine[Any, Any, None]) -> None:
    """Run `main`; SIGTERM (a service manager, `kill`) ends it the way Ctrl-C does.

    Unlike SIGINT, which a shell leaves ignored in background jobs, SIGTERM always arrives.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated = False

    def on_term() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_term)
    try:
        await main
    except asyncio.CancelledError:
        if not terminated:
            raise


def _exit_soon() -> None:
    """Ctrl-C on a listener: its tunnels get SHUTDOWN_TIMEOUT_S to close, and whatever might
    still hang on the way out after that, the process ends anyway (exit status 130)."""
    watchdog = threading.Timer(SHUTDOWN_TIMEOUT_S + 2.0, os._exit, args=(130,))
    watchdog.daemon = True
    watchdog.start()


def _fail(message: str) -> int:
    print(f"eice: {message}", file=sys.stderr, flush=True)
    return 1


def tunnel_command(args: argparse.Namespace) -> int:
    """`eice tunnel`: stdin/stdout, or a local listener with one tunnel per connection."""
    try:
        settings = _prepare(args, args.remote_port)[1]
        if settings.credentials_provider() is None:
            return _fail("no AWS credentials found")
        if args.local_port is None:
            run(run_stdio(settings))
        else:
            listener = serve_local_port(
                settings, args.local_port, max_connections=args.max_connections, on_shutdown=_exit_soon
            )
            try:
                run(_until_terminated(listener))
            except OSError as exc:  # the port is taken, or not ours to listen on
                return _fail(f"cannot listen on 127.0.0.1:{args.local_port}: {exc.strerror or exc}")
    except AccessError as exc:
        return _fail(exc.message)
    except AWS_FAILURES as exc:
        return _fail(f"AWS call failed: {first_line(exc)}")
    except ValueError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    return 0


def ssh_command(args: argparse.Namespace) -> int:
    """`eice ssh`: returns ssh's own exit code."""
    try:
        command = _split_rest(args)
        session, settings = _prepare(args, args.port)
        return run_ssh(
            session,
            settings.target,
            os_user=args.os_user,
            max_tunnel_duration=settings.duration(),
            ssh_options=args.ssh_option or [],
            command=command,
        )
    except AccessError as exc:
        return _fail(exc.message)
    except AWS_FAILURES as exc:
        return _fail(f"AWS call failed: {first_line(exc)}")
    except ValueError as exc:
        return _fail(str(exc))


def tunnel_main(argv: Sequence[str] | None = None) -> int:
    """`python -m access.tunnel`: the stdin/stdout tunnel ssh runs as its ProxyCommand."""
    parser = argparse.ArgumentParser(prog="python -m access.tunnel")
    _add_tunnel_flags(parser)
    return tunnel_command(parser.parse_args(argv))
