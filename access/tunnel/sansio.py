"""websockets' Sans-I/O protocol driven from a plain asyncio Protocol: what both ends of a
tunnel share (the client in `access.tunnel.connection`, the sandbox's endpoint in
`sandbox.aws.tunnel_proxy`).

No StreamReader, queue or task sits in the data path: bytes read from the socket go into
the parser and the events it yields to `_process`; bytes to send become BINARY frames of
at most `FRAME_SIZE` bytes, written in one `writelines`. Each end pauses the other side's
reading while its own write buffer is over `HIGH_WATER` (`pause_writing`).
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar, cast

from websockets.protocol import Event, State
from websockets.protocol import Protocol as WebSocket

FRAME_SIZE = 65_000  # payload bytes per frame, as EICE clients send them
HIGH_WATER = 2**20  # bytes buffered towards either side before the other side is paused
CLOSE_TIMEOUT_S = 5.0  # for the other end to finish a closing handshake before we abort

Side = TypeVar("Side", bound=WebSocket)  # websockets' ClientProtocol or ServerProtocol


class FlowControlled(asyncio.Protocol):
    """A stream protocol of a tunnel (a WebSocket, a local socket, the instance's socket):
    it keeps its transport, lets `HIGH_WATER` bytes queue before `pause_writing`, and
    pauses and resumes its own reading on the other side's behalf."""

    transport: asyncio.Transport | None = None
    _reading_paused = False  # we paused our own transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # any loop's stream transport
        self.transport.set_write_buffer_limits(high=HIGH_WATER)

    def pause_reading(self) -> None:
        """The other side cannot take more: stop reading."""
        if not self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """The other side drained: read again."""
        if self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()


class SansIOConnection(FlowControlled, Generic[Side]):
    """One WebSocket connection; subclasses handle the events in `_process`.

    Args:
        ws: the Sans-I/O protocol object (client or server side).
    """

    def __init__(self, ws: Side) -> None:
        self.ws = ws
        self._close_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed the parser; handle what it found; send what it has to say."""
        self.ws.receive_data(data)
        events = self.ws.events_received()
        if events:
            self._process(events)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws.receive_eof()  # idempotent; the state becomes CLOSED
        self.ws.data_to_send()
        if self._close_timer is not None:
            self._close_timer.cancel()

    # --- sending and flow control --------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send `data` in BINARY frames of at most FRAME_SIZE bytes (dropped once closing:
        the other end will not take more)."""
        if self.ws.state is not State.OPEN:
            return
        if len(data) <= FRAME_SIZE:
            self.ws.send_binary(data)
        else:
            view = memoryview(data)  # slices without copying
            for start in range(0, len(view), FRAME_SIZE):
                self.ws.send_binary(view[start : start + FRAME_SIZE])
        self._flush()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (no-op once closing)."""
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
            self._flush()

    def abort(self) -> None:
        """Drop the connection without a closing handshake."""
        if self.transport is not None:
            self.transport.abort()

    # --- for subclasses ------------------------------------------------------------

    def _process(self, events: list[Event]) -> None:
        """Handle the events the parser yielded (handshake, frames)."""
        raise NotImplementedError

    def _end_output(self, transport: asyncio.Transport) -> None:
        """The protocol has nothing more to send (its closing handshake is over)."""
        transport.close()

    def _flushed(self) -> None:
        """Called after every flush, when the state may have changed."""

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
                self._end_output(transport)
        self._flushed()
        if self._close_timer is None and self.ws.close_expected():
            self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, transport.abort)
