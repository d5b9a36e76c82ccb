"""One OpenTunnel connection at the stand-in: handshake, then bytes to and from the instance.

websockets' Sans-I/O `ServerProtocol` parses the upgrade request and the frames (C
speedups for unmasking) and writes the handshake response and close frames; this
module drives it from a plain asyncio Protocol. Authorisation, quota and CloudTrail
happen once, in the handshake (`admit`, see `tunnel_handshake`); after that, BINARY
frames' payloads go to the target in one `writelines` per read, what the target sends
goes back in BINARY frames of at most `FRAME_SIZE` bytes, TEXT frames close with 1003,
frames over `MAX_FRAME` with 1009 (websockets' size limit), and the tunnel closes at
its `maxTunnelDuration`. Each side pauses the other's reading while its own write buffer
is over the high-water mark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State
from websockets.server import ServerProtocol

from sandbox.aws.tunnel_handshake import TunnelPlan

FRAME_SIZE = 65_000  # bytes per frame towards the client, as EICE clients expect
MAX_FRAME = 2**20  # a bigger frame from a client closes that tunnel (1009)
HIGH_WATER = 2**20  # bytes buffered towards either side before the other side is paused
CONNECT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 5.0
SERVER_HEADER = "eice-sandbox"
UNREACHABLE = "Unable to connect to target"

Admit = Callable[[Request, str], TunnelPlan | Response]


class TargetSide(asyncio.Protocol):
    """The TCP connection to the instance, joined to one tunnel."""

    def __init__(self, tunnel: EndpointConnection) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # any loop's stream transport
        self.transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.tunnel.send(data)

    def eof_received(self) -> None:
        self.tunnel.close(1000)  # the client gets a clean close after the bytes before it

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.tunnel.close(1011, "Connection to target lost")
        else:
            self.tunnel.close(1000)

    def pause_writing(self) -> None:
        self.tunnel.pause_reading()

    def resume_writing(self) -> None:
        self.tunnel.resume_reading()


class EndpointConnection(asyncio.Protocol):
    """One client connection to the endpoint, from upgrade request to close.

    Args:
        admit: checks the upgrade request (given the client's IP) and takes a tunnel
            slot, or gives the HTTP refusal.
        release: gives the slot back (called once, when the connection ends).
        connections: the server's live connections (for closing them at shutdown).
    """

    def __init__(
        self, admit: Admit, release: Callable[[str], None], connections: set[EndpointConnection]
    ) -> None:
        self.admit = admit
        self.release = release
        self.connections = connections
        self.ws = ServerProtocol(max_size=MAX_FRAME)
        self.transport: asyncio.Transport | None = None
        self.target: TargetSide | None = None
        self.plan: TunnelPlan | None = None
        self._held: list[bytes | bytearray | memoryview] = []
        self._reading_paused = False
        self._timers: list[asyncio.TimerHandle] = []
        self._close_timer: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Task[None] | None = None

    # --- the client's connection -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        events = self.ws.events_received()
        if events:
            self._process(events)
        self._flush()

    def eof_received(self) -> None:
        self.ws.receive_eof()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws.receive_eof()
        self.ws.data_to_send()
        self.connections.discard(self)
        for timer in (*self._timers, self._close_timer):
            if timer is not None:
                timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        self._close_target()
        if self.plan is not None:
            self.release(self.plan.endpoint_id)
            self.plan = None

    def pause_writing(self) -> None:
        if self.target is not None and self.target.transport is not None:
            self.target.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.target is not None and self.target.transport is not None:
            self.target.transport.resume_reading()

    # --- the target's calls ----------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Bytes from the target, in BINARY frames of at most FRAME_SIZE bytes."""
        if self.ws.state is not State.OPEN:
            return
        if len(data) <= FRAME_SIZE:
            self.ws.send_binary(data)
        else:
            view = memoryview(data)
            for start in range(0, len(view), FRAME_SIZE):
                self.ws.send_binary(view[start : start + FRAME_SIZE])
        self._flush()

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (no-op once closing)."""
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
            self._flush()

    def pause_reading(self) -> None:
        """The target is not keeping up: stop reading frames."""
        if not self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """The target caught up: read frames again."""
        if self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection (server shutdown)."""
        if self.transport is not None:
            self.transport.abort()

    # --- internals -----------------------------------------------------------------

    def _process(self, events: list[Event]) -> None:
        chunks: list[bytes | bytearray | memoryview] = []
        for event in events:
            if isinstance(event, Request):
                self._handshake(event)
                continue
            if not isinstance(event, Frame):
                continue
            opcode = event.opcode
            if opcode is Opcode.BINARY or opcode is Opcode.CONT:
                chunks.append(event.data)
            elif opcode is Opcode.TEXT:
                self.ws.fail(1003, "Text frames are not supported")
                break
        if chunks:
            target = self.target.transport if self.target is not None else None
            if target is not None:
                if not target.is_closing():
                    target.writelines(chunks)
            elif self.ws.state is State.OPEN:
                self._held.extend(chunks)
                if sum(map(len, self._held)) >= HIGH_WATER:
                    self.pause_reading()

    def _handshake(self, request: Request) -> None:
        assert self.transport is not None
        checked = self.admit(request, str(self.transport.get_extra_info("peername")[0]))
        if isinstance(checked, Response):
            checked.headers["Server"] = SERVER_HEADER
            self.ws.send_response(checked)
            return
        response = self.ws.accept(request)
        response.headers["Server"] = SERVER_HEADER
        if response.status_code != 101:
            self.release(checked.endpoint_id)
            self.ws.send_response(response)
            return
        self.plan = checked
        self.ws.send_response(response)
        loop = asyncio.get_running_loop()
        self._timers.append(
            loop.call_later(checked.max_duration_s, self.close, 1000, "Maximum tunnel duration reached")
        )
        if checked.target is None:
            self.close(1011, UNREACHABLE)
        else:
            self._connecting = loop.create_task(self._connect(checked.target))

    async def _connect(self, target: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                transport, side = await loop.create_connection(lambda: TargetSide(self), *target)
        except (OSError, TimeoutError, ValueError):
            self.close(1011, UNREACHABLE)
            return
        finally:
            self._connecting = None
        if self.ws.state is not State.OPEN:
            transport.close()
            return
        self.target = side
        if self._held:
            held, self._held = self._held, []
            transport.writelines(held)
            self.resume_reading()

    def _close_target(self) -> None:
        if self.target is not None and self.target.transport is not None:
            self.target.transport.close()  # what was written still goes out first

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        writes = self.ws.data_to_send()
        if writes:
            eof = not writes[-1]
            if eof:
                writes.pop()
            if writes:
                transport.writelines(writes)
            if eof:
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()
        if self.ws.state is not State.OPEN and self.ws.state is not State.CONNECTING:
            self._close_target()
        if self._close_timer is None and self.ws.close_expected():
            self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, transport.abort)
