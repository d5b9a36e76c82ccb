"""The OpenTunnel WebSocket client: one tunnel per connection, raw bytes in BINARY frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from access.tunnel.errors import TunnelClosed, TunnelError, TunnelRefused
from access.tunnel.presign import presign_open_tunnel_url
from access.tunnel.target import TunnelTarget

USER_AGENT = "eice-access/0.1 tunnel"
FRAME_SIZE = 65_000  # what EICE clients send at most per frame
OPEN_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 5.0

Read = Callable[[], Awaitable[bytes]]
Write = Callable[[bytes], Awaitable[None]]


@dataclass
class TunnelSettings:
    """How to reach the endpoint: the target, credentials, scheme and TLS."""

    target: TunnelTarget
    credentials_provider: Callable[[], Any]
    max_tunnel_duration: int | None = None
    scheme: str = field(default_factory=lambda: os.environ.get("EICE_TUNNEL_SCHEME", "wss"))
    user_agent: str = USER_AGENT
    open_timeout_s: float = OPEN_TIMEOUT_S

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
            max_tunnel_duration=self.max_tunnel_duration,
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


async def open_tunnel(settings: TunnelSettings) -> ClientConnection:
    """Handshake with the endpoint; refusals become TunnelRefused, other failures TunnelError."""
    url = settings.url()
    try:
        return await connect(
            url,
            ssl=ssl_context(settings.scheme),
            compression=None,
            max_size=None,
            ping_interval=None,
            open_timeout=settings.open_timeout_s,
            close_timeout=CLOSE_TIMEOUT_S,
            user_agent_header=settings.user_agent,
            proxy=None,
            write_limit=2**18,
        )
    except InvalidStatus as exc:
        raise _refusal(exc) from None
    except (InvalidHandshake, OSError, TimeoutError, ssl.SSLError) as exc:
        where = settings.target.dns_name
        raise TunnelError(f"could not open a tunnel through {where}: {exc or type(exc).__name__}") from None


async def pump(ws: ClientConnection, read: Read, write: Write) -> None:
    """Carry bytes both ways until either side ends; raise TunnelClosed on a non-1000 close.

    Local EOF sends close 1000 and waits (bounded) for the endpoint's close.
    """

    async def upstream() -> None:
        while chunk := await read():
            for start in range(0, len(chunk), FRAME_SIZE):
                await ws.send(chunk[start : start + FRAME_SIZE])
        await ws.close(1000)

    async def downstream() -> None:
        async for message in ws:
            if isinstance(message, str):
                await ws.close(1003, "unexpected text frame")
                raise TunnelError("the endpoint sent a TEXT frame; closing the tunnel")
            await write(message)

    up = asyncio.create_task(upstream())
    down = asyncio.create_task(downstream())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and up.exception() is None:
            # We sent close 1000: frames before the endpoint's close still reach `write`.
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                await asyncio.wait_for(asyncio.shield(down), CLOSE_TIMEOUT_S + 1)
            if down.done():
                done.add(down)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, ConnectionClosed | OSError):
                raise exc
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        if ws.close_code is None:
            with contextlib.suppress(Exception):
                await ws.close(1000)
    code = ws.close_code
    if code not in (1000, None):
        raise TunnelClosed(code, ws.close_reason or "")


# --- stdin/stdout (ProxyCommand) ----------------------------------------------------


def _stdin_reader(loop: asyncio.AbstractEventLoop, fd: int) -> Read:
    """Reads stdin in a thread, so pipes, sockets, files and terminals all work."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=8)

    def run() -> None:
        while True:
            try:
                data = os.read(fd, FRAME_SIZE)
            except OSError:
                data = b""
            asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
            if not data:
                return

    threading.Thread(target=run, name="tunnel-stdin", daemon=True).start()
    return queue.get


async def run_stdio(settings: TunnelSettings, in_fd: int = 0, out_fd: int = 1) -> None:
    """One tunnel between stdin/stdout and the instance (what `ProxyCommand` uses)."""
    ws = await open_tunnel(settings)
    loop = asyncio.get_running_loop()

    async def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(out_fd, view)
            view = view[written:]

    await pump(ws, _stdin_reader(loop, in_fd), write)


# --- --local-port listener ------------------------------------------------------------


async def serve_local_port(
    settings: TunnelSettings,
    port: int,
    *,
    host: str = "127.0.0.1",
    max_connections: int = 10,
    ready: Callable[[int], None] | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> None:
    """Listen on `host:port`; each accepted connection gets its own tunnel and presigned URL.

    Args:
        settings: where tunnels go.
        port: local port (0 picks one; `ready` is told which).
        max_connections: connections over this cap are closed at once.
        ready: called with the bound port once listening.
        log: where one-line connection errors go.
    """
    active = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active
        if active >= max_connections:
            log(f"refusing a connection: {max_connections} tunnels already open")
            writer.close()
            return
        active += 1
        try:
            ws = await open_tunnel(settings)

            async def write(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            await pump(ws, lambda: reader.read(FRAME_SIZE), write)
        except TunnelError as exc:
            log(exc.message)
        except (ConnectionError, OSError):
            pass
        finally:
            active -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port, limit=2**18)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    else:
        log(
            f"listening on {host}:{bound}, tunnelling to {settings.target.private_ip}:"
            f"{settings.target.remote_port} through {settings.target.endpoint_id}"
        )
    async with server:
        await server.serve_forever()
