"""One OpenTunnel connection at the stand-in: handshake, then bytes to and from the instance.

websockets' Sans-I/O `ServerProtocol` parses the upgrade request and the frames (C
speedups for unmasking) and writes the handshake response and close frames; this
module drives it from a plain asyncio Protocol. Authorisation, quota and CloudTrail
happen once, in the handshake (`admit`, see `tunnel_handshake`); after that, BINARY
frames' payloads go to the target in one `writelines` per read, what the target sends
goes back in BINARY frames of at most 65,000 bytes, TEXT frames close with 1003,
frames over `MAX_FRAME` with 1009 (websockets' size limit), and the tunnel closes at
its `maxTunnelDuration`. Each side pauses the other's reading while its own write buffer
is over the high-water mark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State
from websockets.server import ServerProtocol

from access.tunnel.sansio import HIGH_WATER, FlowControlled, SansIOConnection
from sandbox.aws.tunnel_handshake import TunnelPlan

MAX_FRAME = 2**20  # a bigger frame from a client closes that tunnel (1009)
CONNECT_TIMEOUT_S = 5.0
SERVER_HEADER = "eice-sandbox"
UNREACHABLE = "Unable to connect to target"

Admit = Callable[[Request, str], TunnelPlan | Response]


class TargetSide(FlowControlled):
    """The TCP connection to the instance, joined to one tunnel."""

    def __init__(self, tunnel: EndpointConnection) -> None:
        self.tunnel = tunnel

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


class EndpointConnection(SansIOConnection[ServerProtocol]):
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
        super().__init__(ServerProtocol(max_size=MAX_FRAME))
        self.admit = admit
        self.release = release
        self.connections = connections
        self.target: TargetSide | None = None
        self.plan: TunnelPlan | None = None
        self._held: list[bytes | bytearray | memoryview] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._connecting: asyncio.Task[None] | None = None

    # --- the client's connection -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.connections.add(self)

    def eof_received(self) -> None:
        self.ws.receive_eof()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.connections.discard(self)
        for timer in self._timers:
            timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        self._close_target()
        if self.plan is not None:
            self.release(self.plan.endpoint_id)
            self.plan = None

    def pause_writing(self) -> None:
        if self.target is not None:
            self.target.pause_reading()

    def resume_writing(self) -> None:
        if self.target is not None:
            self.target.resume_reading()

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

    def _end_output(self, transport: asyncio.Transport) -> None:
        """The server closes the TCP connection first (RFC 6455 7.1.1): half-close where
        the transport can (plain TCP), else close."""
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def _flushed(self) -> None:
        """Once the WebSocket is closing, so is the connection to the target."""
        if self.ws.state is not State.OPEN and self.ws.state is not State.CONNECTING:
            self._close_target()
