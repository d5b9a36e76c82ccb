"""The OpenTunnel WebSocket stand-in: what an EC2 Instance Connect Endpoint does for a client.

`TunnelServer` runs the endpoint on loopback in its own thread and event loop. Each
upgrade request goes through `tunnel_handshake` (presigned URL, IAM, quota, CloudTrail),
once per connection; the accepted tunnel's bytes then go through `tunnel_proxy`
(BINARY frames only, closed at `maxTunnelDuration`) to the loopback port standing in for
the instance (`sandbox.targets`). `wss://` uses a sandbox CA from `tunnel_tls`.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from websockets.http11 import Request, Response

from sandbox.aws.tunnel_handshake import TunnelPlan, authorise_open_tunnel
from sandbox.aws.tunnel_proxy import EndpointConnection
from sandbox.aws.tunnel_tls import server_context

TUNNELS_PER_ENDPOINT = 20


class TunnelServer:
    """The OpenTunnel endpoint on loopback, in its own thread and asyncio loop.

    Args:
        sandbox: the AwsSandbox whose identities, endpoints, targets and events it uses.
        host, port: where to listen (port 0 picks a free one).
        tls_dir: when given, serve `wss://` with a sandbox CA written to `tls_dir/ca.pem`.
    """

    def __init__(
        self, sandbox: Any, *, host: str = "127.0.0.1", port: int = 0, tls_dir: Path | None = None
    ) -> None:
        self.sandbox = sandbox
        self.host = host
        self.port = port
        self.tls_dir = tls_dir
        self.ca_path: Path | None = None
        self.tunnels_per_endpoint = TUNNELS_PER_ENDPOINT
        self._open: Counter[str] = Counter()
        self._connections: set[EndpointConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def scheme(self) -> str:
        return "wss" if self.tls_dir is not None else "ws"

    def open_tunnels(self, endpoint_id: str) -> int:
        """How many tunnels are open through an endpoint right now."""
        return self._open[endpoint_id]

    def start(self) -> TunnelServer:
        """Listen, then point the sandbox's endpoints at this server."""
        ssl_context = None
        if self.tls_dir is not None:
            ssl_context, self.ca_path = server_context(Path(self.tls_dir), self.host)
        self._thread = threading.Thread(
            target=lambda: _run(self._main(ssl_context)), name="eice-tunnel", daemon=True
        )
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"tunnel server failed to start: {self._error}") from self._error
        self.sandbox.attach_tunnel_server(self.host, self.port, self.scheme)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _main(self, ssl_context: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        try:
            server = await loop.create_server(
                lambda: EndpointConnection(self._admit, self._release, self._connections),
                self.host,
                self.port,
                ssl=ssl_context,
            )
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for connection in list(self._connections):
                connection.abort()

    def _admit(self, request: Request, client_ip: str) -> TunnelPlan | Response:
        """The handshake checks; an allowed tunnel takes one of its endpoint's slots."""
        checked = authorise_open_tunnel(
            self.sandbox,
            request,
            client_ip,
            secure=self.tls_dir is not None,
            open_now=self.open_tunnels,
            limit=self.tunnels_per_endpoint,
        )
        if not isinstance(checked, Response):
            self._open[checked.endpoint_id] += 1
        return checked

    def _release(self, endpoint_id: str) -> None:
        self._open[endpoint_id] -= 1


def _run(main: Coroutine[Any, Any, None]) -> None:
    """This thread's event loop: uvloop when installed (less CPU per frame), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
