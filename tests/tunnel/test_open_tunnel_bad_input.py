"""The OpenTunnel stand-in under bad input: malformed or mis-signed handshakes, TEXT and
oversized frames, and an endpoint that never answers; each refused cleanly, the rest served."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from botocore.credentials import Credentials
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from access.tunnel.client import TunnelSettings, open_tunnel
from access.tunnel.errors import TunnelError, TunnelRefused
from access.tunnel.presign import presign_open_tunnel_url

from .conftest import (
    Person,
    Stack,
    echo_instead_of_ssh,
    grant_document,
    holding,
    local_end,
    recv_exactly,
)


def _signed(person: Person, stack: Stack, **kw: Any) -> str:
    args: dict[str, Any] = {
        "credentials": person.credentials,
        "region": "us-east-1",
        "dns_name": stack.dns_name,
        "endpoint_id": stack.endpoint_id,
        "remote_port": 22,
        "private_ip": stack.web.private_ip,
        "max_tunnel_duration": 600,
        "scheme": "ws",
    }
    args.update(kw)
    return presign_open_tunnel_url(**args)


def _with_query(url: str, edit: Any) -> str:
    parts = urlsplit(url)
    pairs = edit(parse_qsl(parts.query))
    return parts._replace(query=urlencode(pairs)).geturl()


def _status(url: str) -> tuple[int, str]:
    async def run() -> tuple[int, str]:
        try:
            ws = await connect(url, proxy=None, open_timeout=5)
        except InvalidStatus as exc:
            import json

            return exc.response.status_code, json.loads(exc.response.body)["ErrorCode"]
        await ws.close()
        return 101, ""

    return asyncio.run(run())


def _drop(name: str) -> Any:
    return lambda pairs: [(k, v) for k, v in pairs if k != name]


def _duplicate(name: str) -> Any:
    return lambda pairs: pairs + [(k, v) for k, v in pairs if k == name]


def _set(name: str, value: str) -> Any:
    return lambda pairs: [(k, value if k == name else v) for k, v in pairs]


BAD_URLS: list[tuple[str, Any, int, str]] = [
    ("missing_signature", _drop("X-Amz-Signature"), 400, "InvalidParameter"),
    ("missing_credential", _drop("X-Amz-Credential"), 400, "InvalidParameter"),
    ("duplicated_date", _duplicate("X-Amz-Date"), 400, "InvalidParameter"),
    ("duplicated_signature", _duplicate("X-Amz-Signature"), 400, "InvalidParameter"),
    ("expires_over_60", _set("X-Amz-Expires", "3600"), 400, "InvalidParameter"),
    (
        "signed_headers_not_host",
        _set("X-Amz-SignedHeaders", "host;x-amz-date"),
        400,
        "InvalidParameter",
    ),
    ("tampered_port", _set("remotePort", "23"), 403, "InvalidSignature"),
    ("tampered_signature", _set("X-Amz-Signature", "0" * 64), 403, "InvalidSignature"),
    ("missing_endpoint_id", _drop("instanceConnectEndpointId"), 400, "InvalidParameter"),
    ("garbage_port", _set("remotePort", "ssh"), 400, "InvalidParameter"),
    ("duration_over_3600", _set("maxTunnelDuration", "3601"), 400, "InvalidParameter"),
]


def test_bad_handshakes_are_refused_and_the_server_keeps_serving(stack: Stack) -> None:
    with holding(stack, "alice", grant_document(stack)) as alice:
        for name, edit, status, code in BAD_URLS:
            assert _status(_with_query(_signed(alice, stack), edit)) == (status, code), name
        base = f"ws://{stack.dns_name}"
        assert _status(f"{base}/openTunnel")[0] == 400
        assert _status(f"{base}/somewhere-else?x=1")[0] == 404
        assert _status(_signed(alice, stack, region="us-west-2")) == (403, "InvalidSignature")
        expired = _signed(alice, stack, now=datetime.now(UTC) - timedelta(minutes=2))
        assert _status(expired) == (403, "ExpiredToken")
        unknown = Person(alice.arn, Credentials("ASIANOTAREALKEY00000", "secret", "token"))
        assert _status(_signed(unknown, stack)) == (403, "InvalidSignature")
        bad_token = Person(
            alice.arn,
            Credentials(alice.credentials.access_key, alice.credentials.secret_key, "forged"),
        )
        assert _status(_signed(bad_token, stack)) == (403, "InvalidSignature")
        assert _status(_signed(alice, stack)) == (101, "")


def test_wrong_service_in_the_scope_is_refused(stack: Stack) -> None:
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest

    with holding(stack, "alice", grant_document(stack)) as alice:
        query = urlencode(
            {
                "instanceConnectEndpointId": stack.endpoint_id,
                "remotePort": "22",
                "privateIpAddress": stack.web.private_ip,
                "maxTunnelDuration": "600",
            }
        )
        request = AWSRequest(
            "GET", f"ws://{stack.dns_name}/openTunnel?{query}", headers={"host": stack.dns_name}
        )
        SigV4QueryAuth(alice.credentials, "ec2", "us-east-1", expires=60).add_auth(request)
        assert _status(request.url) == (403, "InvalidSignature")


def test_text_and_oversized_frames_close_only_that_tunnel(stack: Stack) -> None:
    # websockets' own client sends what ours never would: a TEXT frame, a 1 MiB + 1 frame.
    async def run(settings: TunnelSettings) -> tuple[int | None, int | None, bytes]:
        healthy = await open_tunnel(settings)
        async with local_end(healthy) as (peer, _):
            text = await connect(settings.url(), proxy=None, compression=None, open_timeout=5)
            await text.send("hello")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(_drain(text), 5)
            big = await connect(settings.url(), proxy=None, compression=None, max_size=None, open_timeout=5)
            await big.send(b"\0" * (2**20 + 1))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(_drain(big), 5)
            banner = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(peer, 100), 5)
        return text.close_code, big.close_code, banner

    with holding(stack, "alice", grant_document(stack)) as alice:
        text_code, big_code, banner = asyncio.run(run(alice.settings(stack, max_s=600)))
    assert text_code == 1003
    assert big_code == 1009
    assert banner.startswith(b"SSH-2.0-")


async def _drain(ws: Any) -> None:
    while True:
        await ws.recv()


# --- the data phase --------------------------------------------------------------------


def test_a_chunk_bigger_than_any_frame_limit_crosses_intact(stack: Stack) -> None:
    # 3 MiB handed to the tunnel at once is over the stand-in's 1 MiB frame limit (1009 if
    # sent as one frame): the client must cut it into frames, and the bytes come back whole.
    payload = os.urandom(3 * 2**20)

    async def run(settings: TunnelSettings) -> bytes:
        tunnel = await open_tunnel(settings)
        async with local_end(tunnel) as (peer, _):
            tunnel.send(payload)
            return await recv_exactly(peer, len(payload))

    with echo_instead_of_ssh(stack), holding(stack, "alice", grant_document(stack)) as alice:
        received = asyncio.run(run(alice.settings(stack, max_s=600)))
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(payload).hexdigest()


# --- endpoints that never answer -------------------------------------------------------


def _silent_endpoint(close_at_once: bool) -> socket.socket:
    """A loopback listener that accepts and then says nothing (or hangs up at once)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        held = []
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if close_at_once:
                conn.close()
            else:
                held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    return listener


@pytest.mark.parametrize("close_at_once", [False, True], ids=["never_answers", "hangs_up"])
def test_an_endpoint_that_does_not_answer_the_handshake_is_one_clear_error(
    stack: Stack, close_at_once: bool
) -> None:
    listener = _silent_endpoint(close_at_once)
    try:
        with holding(stack, "alice", grant_document(stack)) as alice:
            settings = alice.settings(stack, max_s=600, dns_name=f"127.0.0.1:{listener.getsockname()[1]}")
            settings.open_timeout_s = 0.5
            started = time.monotonic()
            with pytest.raises(TunnelError) as failed:
                asyncio.run(open_tunnel(settings))
            waited = time.monotonic() - started
    finally:
        listener.close()
    assert failed.value.message.startswith("could not open a tunnel through 127.0.0.1:")
    assert not isinstance(failed.value, TunnelRefused)
    assert waited < 5  # bounded by the open timeout, not hanging
