"""The OpenTunnel stand-in: who gets a tunnel, for how long, how many, and what is recorded."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from access.tunnel.client import TunnelSettings, open_tunnel
from access.tunnel.errors import TunnelClosed, TunnelRefused

from .conftest import (
    Stack,
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
