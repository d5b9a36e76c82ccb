"""The local side of a tunnel over real loopback sockets and the stand-in: bytes held until
the tunnel opens, half-close on local EOF, backpressure both ways, the slot given back."""

from __future__ import annotations

import asyncio
import os
import socket

from access.tunnel.client import TunnelSettings, carry, open_tunnel
from access.tunnel.local import HIGH_WATER, LocalConnection

from .conftest import (
    Stack,
    echo_instead_of_ssh,
    grant_document,
    holding,
    local_end,
    open_tunnels_settled,
    recv_exactly,
)


def test_bytes_sent_before_the_tunnel_opens_go_through_first(stack: Stack) -> None:
    async def run(settings: TunnelSettings) -> bytes:
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        loop = asyncio.get_running_loop()
        _, local = await loop.connect_accepted_socket(LocalConnection, ours)
        await loop.sock_sendall(theirs, b"early bytes, ")
        await asyncio.sleep(0.1)  # they are read and held: no tunnel yet
        carrying = asyncio.create_task(carry(await open_tunnel(settings), local))
        await loop.sock_sendall(theirs, b"then the rest")
        echoed = await recv_exactly(theirs, 26)
        theirs.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(carrying, 10)
        theirs.close()
        return echoed

    with echo_instead_of_ssh(stack), holding(stack, "alice", grant_document(stack)) as alice:
        echoed = asyncio.run(run(alice.settings(stack, max_s=600)))
    assert echoed == b"early bytes, then the rest"


def test_local_eof_closes_the_tunnel_cleanly_and_frees_its_slot(stack: Stack) -> None:
    async def run(settings: TunnelSettings) -> tuple[int | None, bytes, int]:
        tunnel = await open_tunnel(settings)
        async with local_end(tunnel) as (peer, carrying):
            loop = asyncio.get_running_loop()
            banner = await asyncio.wait_for(loop.sock_recv(peer, 100), 5)
            open_while_carrying = stack.tunnels.open_tunnels(stack.endpoint_id)
            peer.shutdown(socket.SHUT_WR)  # the local program is done sending
            await asyncio.wait_for(carrying, 10)  # close 1000, drained until the endpoint closed
            rest = await recv_exactly(peer, 4096, 5)  # then our output ends too (EOF)
        await asyncio.sleep(0.2)
        return tunnel.close_code, banner + rest, open_while_carrying

    with holding(stack, "alice", grant_document(stack)) as alice:
        code, received, open_while_carrying = asyncio.run(run(alice.settings(stack, max_s=600)))
    assert code == 1000
    assert received.startswith(b"SSH-2.0-")
    assert open_while_carrying == 1
    assert open_tunnels_settled(stack) == 0


def test_a_local_peer_that_does_not_read_pauses_the_tunnel_and_loses_nothing(stack: Stack) -> None:
    payload = os.urandom(16 * HIGH_WATER)

    async def run(settings: TunnelSettings) -> tuple[bool, bool, bytes]:
        tunnel = await open_tunnel(settings)
        assert tunnel.transport is not None
        async with local_end(tunnel) as (peer, _):
            loop = asyncio.get_running_loop()
            sending = asyncio.create_task(loop.sock_sendall(peer, payload))
            paused = False
            for _ in range(200):  # nobody reads the echo: the tunnel stops reading frames
                await asyncio.sleep(0.02)
                if not tunnel.transport.is_reading():
                    paused = True
                    break
            received = await recv_exactly(peer, len(payload), 60)  # what was held comes through
            await asyncio.wait_for(sending, 10)
            resumed = tunnel.transport.is_reading()
        return paused, resumed, received

    with echo_instead_of_ssh(stack), holding(stack, "alice", grant_document(stack)) as alice:
        paused, resumed, received = asyncio.run(run(alice.settings(stack, max_s=600)))
    assert paused and resumed
    assert received == payload


def test_a_local_peer_that_goes_away_ends_the_tunnel_without_error(stack: Stack) -> None:
    async def run(settings: TunnelSettings) -> int | None:
        tunnel = await open_tunnel(settings)
        async with local_end(tunnel) as (peer, carrying):
            await asyncio.wait_for(asyncio.get_running_loop().sock_recv(peer, 100), 5)
            peer.close()
            await asyncio.wait_for(carrying, 10)
        await asyncio.sleep(0.2)
        return tunnel.close_code

    with holding(stack, "alice", grant_document(stack)) as alice:
        code = asyncio.run(run(alice.settings(stack, max_s=600)))
    assert code == 1000
    assert open_tunnels_settled(stack) == 0
