"""Pass-through TCP relays for `eice bench tunnel`: the ceiling any tunnel can reach.

A tunnel puts two relays (the client and the endpoint) between the load and the instance.
To tell the cost of that layout from the cost of this project's code, the benchmark also
runs two relays that do no work at all, in the same positions: each accepted connection is
joined to a fresh connection upstream, with one thread per direction moving bytes. Two
kinds:

- `copy`: blocking `recv_into` and `sendall` on one reused buffer; the least work a relay
  in user space can do (no framing, masking, TLS or event loop).
- `splice`: Linux `splice()` through a pipe, so the bytes never enter user space at all;
  what is left is the kernel's TCP work on each hop.

No tunnel (ours, the AWS CLI's, or any other) can move bytes faster than these in the
same layout on the same machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import threading
from collections.abc import Callable

CHUNK = 2**18  # bytes per recv/sendall, here and in the bench's load and echo
PIPE_SIZE = 2**20  # splice pipe capacity (the most an unprivileged process may ask)

Pump = Callable[[socket.socket, socket.socket], None]


def splice_available() -> bool:
    """Whether this platform can run the `splice` relay."""
    return hasattr(os, "splice") and sys.platform.startswith("linux")


def _copy(source: socket.socket, sink: socket.socket) -> None:
    """Move bytes from `source` to `sink` through one reused buffer until EOF."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while got := source.recv_into(buffer):
        sink.sendall(view[:got])


def _splice(source: socket.socket, sink: socket.socket) -> None:
    """Move bytes from `source` to `sink` through a kernel pipe until EOF."""
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):  # a smaller pipe only means more calls
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        while moved := os.splice(source.fileno(), write_end, PIPE_SIZE):
            while moved:
                moved -= os.splice(read_end, sink.fileno(), moved)
    finally:
        os.close(read_end)
        os.close(write_end)


PUMPS: dict[str, Pump] = {"copy": _copy, "splice": _splice}


def _pump(move: Pump, source: socket.socket, sink: socket.socket) -> None:
    """One direction; passes EOF on as a half-close, and a reset as a close."""
    try:
        move(source, sink)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        source.close()
        sink.close()


def _join(move: Pump, accepted: socket.socket, upstream_port: int) -> None:
    """Connect upstream for `accepted` and relay both directions (this thread takes one)."""
    try:
        upstream = socket.create_connection(("127.0.0.1", upstream_port), timeout=10)
    except OSError:
        accepted.close()
        return
    upstream.settimeout(None)
    for conn in (accepted, upstream):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=_pump, args=(move, upstream, accepted), daemon=True).start()
    _pump(move, accepted, upstream)


def accept_forever(listener: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    """Run `handle` on a thread of its own for each connection `listener` accepts, until
    the listener is closed; returns at once."""

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def serve_connections(handle: Callable[[socket.socket], None]) -> None:
    """Child process main: `accept_forever` on a loopback port, print the port, and run
    until stdin closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    accept_forever(listener, handle)
    print(listener.getsockname()[1], flush=True)
    sys.stdin.read()
    listener.close()


def serve_relay(upstream_port: int, kind: str) -> None:
    """Child process: a relay to 127.0.0.1:`upstream_port` (see `serve_connections`)."""
    move = PUMPS[kind]
    serve_connections(lambda accepted: _join(move, accepted, upstream_port))
