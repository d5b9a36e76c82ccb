"""The OpenTunnel WebSocket client: one tunnel per connection, raw bytes in BINARY frames."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.uri import parse_uri

from access.errors import AccessError
from access.tunnel.connection import LocalEnd, TunnelConnection
from access.tunnel.duration import max_tunnel_duration
from access.tunnel.errors import TunnelClosed, TunnelError, TunnelRefused
from access.tunnel.local import LocalConnection, StdioSide
from access.tunnel.presign import presign_open_tunnel_url
from access.tunnel.target import TunnelTarget

USER_AGENT = "eice-access/0.1 tunnel"
OPEN_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 2.0  # Ctrl-C on a listener: how long its tunnels get to close
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a tunnel to completion on uvloop when it is installed, else on asyncio's loop.

    A tunnel spends its CPU in the event loop's socket reads and writes; uvloop's are in C
    and take about a sixth less CPU per MiB carried (`eice bench tunnel`).
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


@dataclass
class TunnelSettings:
    """How to reach the endpoint: the target, credentials, scheme and TLS.

    `maxTunnelDuration` is `max_tunnel_duration` when given; else, with `expires_at`, it is
    worked out again for each connection from the time left (the grant allows less as its
    end nears, so a listener's later connections must ask for less than its first).
    """

    target: TunnelTarget
    credentials_provider: Callable[[], Any]
    max_tunnel_duration: int | None = None
    expires_at: datetime | None = None
    scheme: str = field(default_factory=lambda: os.environ.get("EICE_TUNNEL_SCHEME", "wss"))
    user_agent: str = USER_AGENT
    open_timeout_s: float = OPEN_TIMEOUT_S
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def duration(self) -> int | None:
        """`maxTunnelDuration` for a connection made now (InvalidInput once expired)."""
        seconds, expires_at = self.max_tunnel_duration, self.expires_at
        return max_tunnel_duration(expires_at=expires_at, seconds=seconds, now=self.clock())

    def url(self) -> str:
        """A freshly presigned URL (each connection gets its own)."""
        t = self.target
        return presign_open_tunnel_url(
            credentials=self.credentials_provider(),
            region=t.region,
            dns_name=t.dns_name,
            endpoint_id=t.endpoint_id,
            remote_port=t.remote_port,
            private_ip=t.private_ip,
            max_tunnel_duration=self.duration(),
            scheme=self.scheme,
        )


def ssl_context(scheme: str) -> ssl.SSLContext | None:
    """The system trust store, plus `AWS_CA_BUNDLE` when set (the sandbox CA in tests)."""
    if scheme != "wss":
        return None
    context = ssl.create_default_context()
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if bundle:
        context.load_verify_locations(cafile=bundle)
    return context


def _refusal(exc: InvalidStatus) -> TunnelRefused:
    response = exc.response
    code, message = "Error", ""
    try:
        body = json.loads(bytes(response.body or b"{}"))
        code = str(body.get("ErrorCode") or body.get("__type") or code)
        message = str(body.get("Message") or body.get("message") or "")
    except (ValueError, AttributeError):
        message = bytes(response.body or b"")[:200].decode(errors="replace")
    return TunnelRefused(
        response.status_code,
        code,
        message or response.reason_phrase,
        response.headers.get("x-amzn-requestid"),
    )


async def open_tunnel(settings: TunnelSettings) -> TunnelConnection:
    """Connect and handshake with the endpoint (bounded by `open_timeout_s`).

    Refusals become TunnelRefused, other failures TunnelError. The handshake is
    websockets' Sans-I/O `ClientProtocol`: no compression, no subprotocol, no size limit.
    """
    try:
        url = settings.url()
    except AccessError as exc:  # the grant's time is up
        raise TunnelError(exc.message) from None
    uri = parse_uri(url)
    ws = ClientProtocol(uri, max_size=None)
    request = ws.connect()
    request.headers["User-Agent"] = settings.user_agent
    context = ssl_context(settings.scheme)
    loop = asyncio.get_running_loop()
    tunnel: TunnelConnection | None = None
    try:
        async with asyncio.timeout(settings.open_timeout_s):
            _, tunnel = await loop.create_connection(
                lambda: TunnelConnection(ws, request),
                uri.host,
                uri.port,
                ssl=context,
                server_hostname=uri.host if context is not None else None,
            )
            await tunnel.opened
        if tunnel.open_error is not None:
            raise tunnel.open_error
        return tunnel
    except InvalidStatus as exc:
        raise _refusal(exc) from None
    except (InvalidHandshake, OSError, TimeoutError, ssl.SSLError, TunnelError) as exc:
        if tunnel is not None:
            tunnel.abort()
        where = settings.target.dns_name
        why = exc.message if isinstance(exc, TunnelError) else str(exc) or type(exc).__name__
        raise TunnelError(f"could not open a tunnel through {where}: {why}") from None
    except BaseException:
        if tunnel is not None:
            tunnel.abort()
        raise


async def carry(tunnel: TunnelConnection, local: LocalEnd) -> None:
    """Carry bytes both ways until the tunnel closes; raise TunnelClosed on a non-1000 close
    and TunnelError after a TEXT frame from the endpoint.

    Local EOF sends close 1000, and the instance's bytes keep arriving until the
    endpoint's close (bounded by the close timeout). The local side is closed at the end.
    """
    local.attach(tunnel)
    try:
        await asyncio.shield(tunnel.closed)
    finally:
        local.close()
        if not tunnel.closed.done():
            tunnel.abort()
    if tunnel.error is not None:
        raise tunnel.error
    code = tunnel.close_code
    if code not in (1000, None):
        raise TunnelClosed(code, tunnel.close_reason)


# --- stdin/stdout (ProxyCommand) ----------------------------------------------------


async def run_stdio(settings: TunnelSettings, in_fd: int = 0, out_fd: int = 1) -> None:
    """One tunnel between stdin/stdout and the instance (what `ProxyCommand` uses)."""
    tunnel = await open_tunnel(settings)
    await carry(tunnel, StdioSide(in_fd, out_fd))


# --- --local-port listener ------------------------------------------------------------


async def serve_local_port(
    settings: TunnelSettings,
    port: int,
    *,
    host: str = "127.0.0.1",
    max_connections: int = 10,
    ready: Callable[[int], None] | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    on_shutdown: Callable[[], None] | None = None,
) -> None:
    """Listen on `host:port`; each accepted connection gets its own tunnel and presigned URL.

    Args:
        settings: where tunnels go.
        port: local port (0 picks one; `ready` is told which).
        max_connections: connections over this cap are closed at once.
        ready: called with the bound port once listening.
        log: where one-line connection errors go.
        on_shutdown: called first when the listener stops (Ctrl-C cancels it).
    """
    active = 0
    handlers: set[asyncio.Task[None]] = set()

    async def handle(local: LocalConnection) -> None:
        nonlocal active
        if active >= max_connections:
            log(f"refusing a connection: {max_connections} tunnels already open")
            local.close()
            return
        active += 1
        try:
            await carry(await open_tunnel(settings), local)
        except TunnelError as exc:
            log(exc.message)
        except (ConnectionError, OSError):
            pass
        finally:
            active -= 1
            local.close()

    def accepted(local: LocalConnection) -> None:
        task = asyncio.get_running_loop().create_task(handle(local))
        handlers.add(task)
        task.add_done_callback(handlers.discard)

    server = await asyncio.get_running_loop().create_server(lambda: LocalConnection(accepted), host, port)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    else:
        log(
            f"listening on {host}:{bound}, tunnelling to {settings.target.private_ip}:"
            f"{settings.target.remote_port} through {settings.target.endpoint_id}"
        )
    try:
        await server.serve_forever()
    finally:
        # Ctrl-C: stop listening and end the open tunnels now. The server's own close would
        # wait for every connection to end by itself, which an open SSH session never does.
        if on_shutdown is not None:
            on_shutdown()
        server.close()
        for task in list(handlers):
            task.cancel()
        if handlers:
            await asyncio.wait(set(handlers), timeout=SHUTDOWN_TIMEOUT_S)
