"""One OpenTunnel WebSocket, driven by websockets' Sans-I/O `ClientProtocol` on a plain
asyncio Protocol.

websockets does the framing, masking (its C speedups), handshake parsing and closing
handshake; this module only moves bytes between the TCP (or TLS) transport and the local
side of the tunnel. No StreamReader, queue or task sits in the data path: a chunk read
from the local side becomes BINARY frames written in one `writelines`, and the payloads
of frames received go to the local side in one `writelines`. Each side pauses the other's
reading while its own write buffer is over the high-water mark.
"""

from __future__ import annotations

import asyncio
from typing import Protocol as Interface
from typing import cast

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State

from access.tunnel.errors import TunnelError

FRAME_SIZE = 65_000  # what EICE clients send at most per frame
HIGH_WATER = 2**20  # bytes buffered towards either side before the other side is paused
CLOSE_TIMEOUT_S = 5.0
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


class TunnelConnection(asyncio.Protocol):
    """The WebSocket of one tunnel: the opening handshake, then frames both ways.

    Args:
        ws: a fresh `ClientProtocol` for the presigned URL (state CONNECTING).
        request: the handshake request to send once connected.
    """

    def __init__(self, ws: ClientProtocol, request: Request) -> None:
        loop = asyncio.get_running_loop()
        self.ws = ws
        self.request = request
        self.transport: asyncio.Transport | None = None
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
        self._reading_paused = False  # we paused our own transport
        self._close_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the handshake request."""
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self.ws.send_request(self.request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; hand frame payloads to the local side in one write."""
        self.ws.receive_data(data)
        events = self.ws.events_received()
        if events:
            self._process(events)
        self._flush()

    def eof_received(self) -> None:
        """The endpoint closed its side: let the protocol finish, then the transport closes."""
        self.ws.receive_eof()
        self._process(self.ws.events_received())
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        """Settle the futures and end the local side's output."""
        self.ws.receive_eof()  # idempotent; the state becomes CLOSED
        self.ws.data_to_send()
        if self._close_timer is not None:
            self._close_timer.cancel()
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

    def send(self, data: bytes) -> None:
        """Send local bytes in BINARY frames of at most FRAME_SIZE bytes."""
        if self.ws.state is not State.OPEN:
            return  # closing: the endpoint will not take more data
        if len(data) <= FRAME_SIZE:
            self.ws.send_binary(data)
        else:
            view = memoryview(data)  # slices without copying; each is masked into its frame
            for start in range(0, len(view), FRAME_SIZE):
                self.ws.send_binary(view[start : start + FRAME_SIZE])
        self._flush()

    def send_eof(self) -> None:
        """The local side finished sending: close 1000, then drain until the endpoint closes."""
        self.close(1000)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (no-op once closing)."""
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
            self._flush()

    def pause_reading(self) -> None:
        """The local side cannot take more: stop reading frames."""
        if not self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """The local side drained: read frames again."""
        if self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection without a closing handshake."""
        if self.transport is not None:
            self.transport.abort()

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

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        writes = self.ws.data_to_send()
        if writes:
            if writes[-1]:
                transport.writelines(writes)
            else:  # EOF: the closing handshake is over on our side
                if len(writes) > 1:
                    transport.writelines(writes[:-1])
                transport.close()
        if self._close_timer is None and self.ws.close_expected():
            self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, transport.abort)
