"""`--local-port` mode in process: each connection its own tunnel, and the cap holds."""

from __future__ import annotations

import asyncio

from access.tunnel.client import serve_local_port

from .conftest import Stack, grant_document, holding


def test_connections_over_the_cap_are_closed_and_the_slot_comes_back(stack: Stack) -> None:
    lines: list[str] = []

    async def banner(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(reader.read(100), 10)
        finally:
            writer.close()

    async def run() -> tuple[bytes, bytes, bytes]:
        bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(
            serve_local_port(settings, 0, max_connections=1, ready=bound.set_result, log=lines.append)
        )
        try:
            port = await asyncio.wait_for(bound, 10)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            first = await asyncio.wait_for(reader.read(100), 10)  # its tunnel is open
            refused = await banner(port)  # a second one while the first holds the only slot
            writer.close()
            await writer.wait_closed()
            again = b""
            for _ in range(50):  # the first tunnel winds down, then its slot is free again
                await asyncio.sleep(0.1)
                again = await banner(port)
                if again:
                    break
            return first, refused, again
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)

    with holding(stack, "alice", grant_document(stack)) as alice:
        settings = alice.settings(stack, max_s=600)
        first, refused, again = asyncio.run(run())
    assert first.startswith(b"SSH-2.0-")
    assert refused == b""
    assert lines[0] == "refusing a connection: 1 tunnels already open"
    assert again.startswith(b"SSH-2.0-")
