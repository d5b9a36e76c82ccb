"""The local end of a tunnel: a TCP connection (`--local-port`) or stdin/stdout (ProxyCommand).

Both push bytes straight into the tunnel's WebSocket (`TunnelConnection.send`) and take
frame payloads straight from it; backpressure pauses reading on the other side instead
of queueing. Local EOF half-closes: the tunnel sends close 1000 and keeps delivering
the instance's bytes until the endpoint closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable

from access.tunnel.connection import Chunk, TunnelConnection
from access.tunnel.sansio import HIGH_WATER, FlowControlled

READ_SIZE = 4 * 65_000  # stdin reads feed several full frames at a time


class LocalConnection(FlowControlled):
    """One accepted local TCP connection, carried by one tunnel once `attach`ed.

    Bytes that arrive before the tunnel is open are held (reading pauses past
    HIGH_WATER) and sent first.
    """

    def __init__(self, on_connect: Callable[[LocalConnection], None] | None = None) -> None:
        self._on_connect = on_connect
        self.tunnel: TunnelConnection | None = None
        self._held: list[bytes] = []
        self._held_size = 0
        self._eof = False

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport and give writes room before backpressure starts."""
        super().connection_made(transport)
        if self._on_connect is not None:
            self._on_connect(self)

    def data_received(self, data: bytes) -> None:
        """Into the tunnel at once, or held until it is open."""
        if self.tunnel is not None:
            self.tunnel.send(data)
            return
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size >= HIGH_WATER:
            self.pause_reading()

    def eof_received(self) -> bool:
        """The local program finished sending: the tunnel half-closes, our output stays open."""
        self._local_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """Gone either way: the tunnel closes too."""
        self._local_eof()

    def pause_writing(self) -> None:
        """The local peer is not keeping up: stop reading frames."""
        if self.tunnel is not None:
            self.tunnel.pause_reading()

    def resume_writing(self) -> None:
        """The local peer caught up: read frames again."""
        if self.tunnel is not None:
            self.tunnel.resume_reading()

    # --- the tunnel's calls --------------------------------------------------------

    def attach(self, tunnel: TunnelConnection) -> None:
        """Carry this connection through `tunnel`, held bytes first."""
        self.tunnel = tunnel
        held, self._held, self._held_size = self._held, [], 0
        for chunk in held:
            tunnel.send(chunk)
        if self._eof:
            tunnel.send_eof()
        self.resume_reading()
        tunnel.attach(self)

    def write(self, chunks: list[Chunk]) -> None:
        """Bytes from the instance to the local peer."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(chunks)

    def write_eof(self) -> None:
        """The instance is done sending: half-close towards the local peer."""
        transport = self.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):  # already shut down by the peer
                transport.write_eof()

    def close(self) -> None:
        """Close the local connection (pending writes are still flushed)."""
        if self.transport is not None:
            self.transport.close()

    def _local_eof(self) -> None:
        if self._eof:
            return
        self._eof = True
        if self.tunnel is not None:
            self.tunnel.send_eof()


class StdioSide:
    """stdin/stdout as a tunnel's local end (what ssh's `ProxyCommand` talks to).

    stdin is read in a thread, so pipes, sockets, files and terminals all work; reading
    waits while the tunnel is paused. stdout is written directly (ssh reads it promptly).
    """

    def __init__(self, in_fd: int = 0, out_fd: int = 1) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.tunnel: TunnelConnection | None = None
        self._may_read = threading.Event()
        self._may_read.set()
        self._closed = False

    def attach(self, tunnel: TunnelConnection) -> None:
        """Start reading stdin into `tunnel`."""
        self.tunnel = tunnel
        tunnel.attach(self)
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._read, args=(loop, tunnel), name="tunnel-stdin", daemon=True).start()

    def _read(self, loop: asyncio.AbstractEventLoop, tunnel: TunnelConnection) -> None:
        while True:
            self._may_read.wait()
            try:
                data = os.read(self.in_fd, READ_SIZE)
            except OSError:
                data = b""
            if self._closed:
                return
            try:
                if data:
                    loop.call_soon_threadsafe(tunnel.send, data)
                else:
                    loop.call_soon_threadsafe(tunnel.send_eof)
                    return
            except RuntimeError:  # the loop has closed
                return

    def write(self, chunks: list[Chunk]) -> None:
        """Bytes from the instance to stdout."""
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self.out_fd, view) :]
        except OSError:  # stdout's reader is gone: nobody wants the tunnel any more
            if self.tunnel is not None:
                self.tunnel.close(1000)

    def write_eof(self) -> None:
        """Nothing to do: stdout ends when the process does."""

    def pause_reading(self) -> None:
        """The tunnel is full: the stdin thread waits before its next read."""
        self._may_read.clear()

    def resume_reading(self) -> None:
        """Let the stdin thread read again."""
        self._may_read.set()

    def close(self) -> None:
        """Stop forwarding stdin."""
        self._closed = True
        self._may_read.set()
