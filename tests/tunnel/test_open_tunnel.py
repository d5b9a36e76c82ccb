"""The OpenTunnel stand-in: who gets a tunnel, for how long, how many, and what is recorded."""

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
from botocore.exceptions import ClientError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from access.tunnel.client import TunnelSettings, open_tunnel
from access.tunnel.errors import TunnelClosed, TunnelError, TunnelRefused
from access.tunnel.presign import presign_open_tunnel_url

from .conftest import (
    Person,
    Stack,
    echo_instead_of_ssh,
    grant_document,
    holding,
    local_end,
    open_tunnels_settled,
    recv_exactly,
)


async def _banner(settings: TunnelSettings) -> bytes:
    """The instance's first bytes through a tunnel, then a clean close from our side."""
    tunnel = await open_tunnel(settings)
    async with local_end(tunnel) as (peer, carrying):
        loop = asyncio.get_running_loop()
        banner = await asyncio.wait_for(loop.sock_recv(peer, 100), 5)
        peer.shutdown(socket.SHUT_WR)  # local EOF: close 1000, and the carry ends
        await asyncio.wait_for(carrying, 10)
    assert tunnel.close_code == 1000
    return banner


def _open(settings: TunnelSettings) -> bytes:
    return asyncio.run(_banner(settings))


def _refusal(settings: TunnelSettings) -> TunnelRefused:
    with pytest.raises(TunnelRefused) as refused:
        _open(settings)
    return refused.value


def test_a_granted_tunnel_reaches_the_instance_ssh_server(stack: Stack) -> None:
    with holding(stack, "alice", grant_document(stack)) as alice:
        banner = _open(alice.settings(stack, max_s=600))
    assert banner.startswith(b"SSH-2.0-")


def test_no_policy_is_access_denied(stack: Stack) -> None:
    with holding(stack, "bob", None) as bob:
        refused = _refusal(bob.settings(stack, max_s=600))
    assert (refused.status, refused.code) == (403, "AccessDeniedException")
    assert refused.request_id


def test_removed_policy_is_access_denied(stack: Stack) -> None:
    with holding(stack, "alice", grant_document(stack)) as alice:
        _open(alice.settings(stack, max_s=600))
    assert _refusal(alice.settings(stack, max_s=600)).code == "AccessDeniedException"


def test_a_window_that_has_passed_is_access_denied(stack: Stack) -> None:
    past = grant_document(stack, minutes=-1, start_offset_s=-600)
    with holding(stack, "alice", past) as alice:
        assert _refusal(alice.settings(stack, max_s=30)).code == "AccessDeniedException"


@pytest.mark.parametrize(
    ("change", "max_s"),
    [
        ({"remote_port": 3389}, 600),
        ({"private_ip": "10.0.1.99"}, 600),
        ({}, 3600),  # more than the grant's remaining window
        ({}, None),  # not sending it means 3600
    ],
    ids=["other_port", "other_ip", "too_long", "duration_left_out"],
)
def test_outside_the_grant_is_access_denied(stack: Stack, change: dict[str, Any], max_s: int | None) -> None:
    with holding(stack, "alice", grant_document(stack)) as alice:
        refused = _refusal(alice.settings(stack, max_s=max_s, **change))
    assert (refused.status, refused.code) == (403, "AccessDeniedException")


def test_other_os_user_cannot_push_a_key(stack: Stack) -> None:
    with holding(stack, "alice", grant_document(stack)) as alice:
        client = alice.client(stack, "ec2-instance-connect")
        with pytest.raises(ClientError) as refused:
            client.send_ssh_public_key(
                InstanceId=stack.web.instance_id,
                InstanceOSUser="root",
                SSHPublicKey="ssh-ed25519 " + "A" * 80,
            )
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"


def test_tunnel_closes_cleanly_at_its_max_tunnel_duration(stack: Stack) -> None:
    async def run(settings: TunnelSettings) -> tuple[float, int | None, bytes]:
        tunnel = await open_tunnel(settings)
        started = time.monotonic()
        async with local_end(tunnel) as (peer, carrying):
            await asyncio.wait_for(carrying, 10)  # returns: 1000 is a clean end
            lasted = time.monotonic() - started
            received = await recv_exactly(peer, 4096, 5)  # the banner, then EOF
        return lasted, tunnel.close_code, received

    with holding(stack, "alice", grant_document(stack)) as alice:
        lasted, code, received = asyncio.run(run(alice.settings(stack, max_s=2)))
    assert code == 1000
    assert 1.8 < lasted < 4
    assert received.startswith(b"SSH-2.0-")


def test_an_unreachable_target_closes_with_a_reason(stack: Stack) -> None:
    document = grant_document(stack)
    document["Statement"][0]["Condition"]["IpAddress"]["ec2-instance-connect:privateIpAddress"] = (
        "10.0.0.0/16"
    )
    with holding(stack, "alice", document) as alice:
        settings = alice.settings(stack, max_s=600, private_ip="10.0.1.250")

        async def run() -> None:
            async with local_end(await open_tunnel(settings)) as (_, carrying):
                await asyncio.wait_for(carrying, 10)

        with pytest.raises(TunnelClosed) as closed:
            asyncio.run(run())
    assert (closed.value.code, closed.value.reason) == (1011, "Unable to connect to target")


def test_the_21st_concurrent_tunnel_through_an_endpoint_is_refused(stack: Stack) -> None:
    async def run(settings: TunnelSettings) -> tuple[TunnelRefused | None, bool]:
        tunnels = await asyncio.gather(*(open_tunnel(settings) for _ in range(20)))
        try:
            try:
                await open_tunnel(settings)
                refused = None
            except TunnelRefused as exc:
                refused = exc
        finally:
            for tunnel in tunnels:
                tunnel.close()
            await asyncio.wait_for(asyncio.gather(*(t.closed for t in tunnels)), 10)
        await asyncio.sleep(0.2)
        again = await open_tunnel(settings)
        again.close()
        await asyncio.wait_for(again.closed, 10)
        return refused, True

    with holding(stack, "carol", grant_document(stack)) as carol:
        refused, reopened = asyncio.run(run(carol.settings(stack, max_s=600)))
    assert refused is not None and refused.status == 429
    assert refused.code == "ServiceQuotaExceededException"
    assert reopened
    assert open_tunnels_settled(stack) == 0


def test_every_attempt_is_recorded_with_principal_parameters_and_error(stack: Stack) -> None:
    with holding(stack, "alice", grant_document(stack)) as alice:
        _open(alice.settings(stack, max_s=600))
        _refusal(alice.settings(stack, max_s=600, remote_port=3389))
    mine = [
        e
        for e in stack.sandbox.events.all()
        if e["eventName"] == "OpenTunnel" and e["userIdentity"]["arn"] == alice.arn
    ]
    assert [e.get("errorCode") for e in mine] == [None, "AccessDeniedException"]
    allowed, denied = mine
    assert allowed["requestParameters"] == {
        "instanceConnectEndpointId": stack.endpoint_id,
        "remotePort": "22",
        "privateIpAddress": stack.web.private_ip,
        "maxTunnelDuration": "600",
    }
    assert allowed["responseElements"] is None
    assert allowed["resources"] == [
        {"type": "AWS::EC2::InstanceConnectEndpoint", "ARN": stack.estate.endpoints["prod"].arn}
    ]
    assert allowed["eventSource"] == "ec2-instance-connect.amazonaws.com"
    assert allowed["userAgent"].startswith("eice-access/0.1 tunnel")
    assert allowed["sourceIPAddress"] == "127.0.0.1"
    assert (
        allowed["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] == stack.estate.role_arns["alice"]
    )
    assert denied["requestParameters"]["remotePort"] == "3389"
    assert "not authorized" in denied["errorMessage"]


# --- malformed and tampered handshakes -------------------------------------------------


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
