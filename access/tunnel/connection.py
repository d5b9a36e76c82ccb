"""One OpenTunnel WebSocket at the client: websockets' Sans-I/O `ClientProtocol` on a
plain asyncio Protocol (`access.tunnel.sansio`).

websockets does the framing, masking (its C speedups), handshake parsing and closing
handshake; this module only moves bytes between the TCP (or TLS) transport and the local
side of the tunnel: a chunk read from the local side becomes BINARY frames written in one
`writelines`, and the payloads of frames received go to the local side in one
`writelines`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol as Interface

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State

from access.tunnel.errors import TunnelError
from access.tunnel.sansio import SansIOConnection

HELD_BACK = 2**20  # frames' bytes kept for a local side that is not attached yet

Chunk = bytes | bytearray | memoryview  # a frame's payload as websockets gives it


class LocalSide(Interface):
    """What a tunnel needs from its local end (a TCP connection, or stdin/stdout)."""

    def write(self, chunks: list[Chunk]) -> None:
        """Send bytes that came from the instance."""

    def write_eof(self) -> None:
        """The instance has finished sending."""

    def pause_reading(self) -> None:
        """Stop reading local bytes until `resume_reading`."""

    def resume_reading(self) -> None:
        """Read local bytes again."""


class LocalEnd(LocalSide, Interface):
    """A local side that can be joined to a tunnel and closed when the tunnel ends."""

    def attach(self, tunnel: TunnelConnection) -> None:
        """Start sending local bytes through `tunnel` (and receiving its bytes)."""

    def close(self) -> None:
        """Close the local side once pending bytes are written."""


class TunnelConnection(SansIOConnection[ClientProtocol]):
    """The WebSocket of one tunnel: the opening handshake, then frames both ways.

    Args:
        ws: a fresh `ClientProtocol` for the presigned URL (state CONNECTING).
        request: the handshake request to send once connected.
    """

    def __init__(self, ws: ClientProtocol, request: Request) -> None:
        super().__init__(ws)
        loop = asyncio.get_running_loop()
        self.request = request
        self.response: Response | None = None
        self.opened: asyncio.Future[None] = loop.create_future()  # handshake over, either way
        self.open_error: Exception | None = None  # why it failed, when it did
        self.closed: asyncio.Future[None] = loop.create_future()
        self.error: TunnelError | None = None
        self.local: LocalSide | None = None
        self._held: list[Chunk] = []
        self._held_size = 0
        self._eof_from_instance = False
        self._local_paused = False  # we paused the local side's reading

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the handshake request."""
        super().connection_made(transport)
        self.ws.send_request(self.request)
        self._flush()

    def eof_received(self) -> None:
        """The endpoint closed its side: let the protocol finish, then the transport closes."""
        self.ws.receive_eof()
        self._process(self.ws.events_received())
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        """Settle the futures and end the local side's output."""
        super().connection_lost(exc)
        if not self.opened.done():
            reason = exc or self.ws.handshake_exc or "connection closed"
            self.open_error = TunnelError(f"connection closed during the handshake: {reason}")
            self.opened.set_result(None)
        self._instance_done()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        """Our socket's buffer is full: stop reading the local side."""
        self._local_paused = True
        if self.local is not None:
            self.local.pause_reading()

    def resume_writing(self) -> None:
        """Our socket drained: read the local side again."""
        self._local_paused = False
        if self.local is not None:
            self.local.resume_reading()

    # --- the local side's calls ------------------------------------------------------

    def attach(self, local: LocalSide) -> None:
        """Start carrying bytes to and from `local` (frames received so far go first)."""
        self.local = local
        if self._local_paused:
            local.pause_reading()
        if self._held:
            held, self._held, self._held_size = self._held, [], 0
            local.write(held)
            self.resume_reading()
        if self._eof_from_instance:
            local.write_eof()

    def send_eof(self) -> None:
        """The local side finished sending: close 1000, then drain until the endpoint closes."""
        self.close(1000)

    @property
    def close_code(self) -> int | None:
        """The close code received (or sent, when none was received)."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        """The close reason that goes with `close_code`."""
        return self.ws.close_reason or ""

    # --- internals -----------------------------------------------------------------

    def _process(self, events: list[Event]) -> None:
        chunks: list[Chunk] = []
        closing = False
        for event in events:
            if isinstance(event, Response):
                self.response = event
                continue
            if not isinstance(event, Frame):
                continue
            opcode = event.opcode
            if opcode is Opcode.BINARY or opcode is Opcode.CONT:
                if self.error is None:
                    chunks.append(event.data)
            elif opcode is Opcode.TEXT and self.error is None:
                self.error = TunnelError("the endpoint sent a TEXT frame; closing the tunnel")
                self.close(1003, "unexpected text frame")
            elif opcode is Opcode.CLOSE:
                closing = True
        if chunks:
            self._deliver(chunks)
        if closing:
            self._instance_done()
        if not self.opened.done() and (
            self.ws.handshake_exc is not None or self.ws.state is not State.CONNECTING
        ):
            self.open_error = self.ws.handshake_exc
            self.opened.set_result(None)

    def _deliver(self, chunks: list[Chunk]) -> None:
        if self.local is not None:
            self.local.write(chunks)
            return
        self._held.extend(chunks)
        self._held_size += sum(map(len, chunks))
        if self._held_size >= HELD_BACK:
            self.pause_reading()

    def _instance_done(self) -> None:
        if not self._eof_from_instance:
            self._eof_from_instance = True
            if self.local is not None:
                self.local.write_eof()
