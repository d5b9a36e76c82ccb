"""The whole tunnel stack on loopback: AWS sandbox, OpenTunnel stand-in (ws and wss),
SendSSHPublicKey, and an SSH server per instance. Never a real account."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials

from access.grants.policy import GrantScope, grant_policy
from access.tunnel.client import TunnelSettings, carry
from access.tunnel.connection import TunnelConnection
from access.tunnel.local import LocalConnection
from access.tunnel.relays import accept_forever
from access.tunnel.target import TunnelTarget
from sandbox.aws.account import bot_client
from sandbox.aws.eice import TunnelServer
from sandbox.aws.instance_connect import InstanceConnectService
from sandbox.aws.seed import Estate, SeedInstance, seed_estate
from sandbox.aws.server import BOT_ACCESS_KEY_ID, BOT_SECRET_ACCESS_KEY, AwsSandbox
from sandbox.aws.ssh_server import InstanceSshServers


@dataclass
class Stack:
    sandbox: AwsSandbox
    tunnels: TunnelServer
    tls_tunnels: TunnelServer
    instance_connect: InstanceConnectService
    ssh: InstanceSshServers
    estate: Estate

    def bot(self, service: str) -> Any:
        return bot_client(service, self.sandbox.url)

    @property
    def web(self) -> SeedInstance:
        return self.estate.instance("web-1")

    @property
    def endpoint_id(self) -> str:
        return self.estate.endpoints["prod"].endpoint_id

    @property
    def dns_name(self) -> str:
        return f"127.0.0.1:{self.tunnels.port}"


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", BOT_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", BOT_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    sandbox = AwsSandbox().start()
    sandbox.reset()  # moto's state is process-wide; the estate's names must be free
    tls = TunnelServer(sandbox, tls_dir=tmp_path_factory.mktemp("tls")).start()
    plain = TunnelServer(sandbox).start()  # attached last: endpoints' DnsName points here
    instance_connect = InstanceConnectService(sandbox).install()
    ssh = InstanceSshServers(sandbox, instance_connect.keys).start()
    estate = seed_estate(sandbox)
    ssh.serve_running()
    yield Stack(sandbox, plain, tls, instance_connect, ssh, estate)
    ssh.stop()
    plain.stop()
    tls.stop()
    sandbox.stop()


@dataclass(frozen=True)
class Person:
    """Role-session credentials for someone holding a policy."""

    arn: str
    credentials: Credentials

    def env(self, stack: Stack, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(stack.sandbox.env())
        env.update(
            AWS_ACCESS_KEY_ID=self.credentials.access_key,
            AWS_SECRET_ACCESS_KEY=self.credentials.secret_key,
            AWS_SESSION_TOKEN=self.credentials.token or "",
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
            EICE_TUNNEL_SCHEME="ws",
        )
        env.update(extra)
        return env

    def client(self, stack: Stack, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=stack.sandbox.url,
            region_name="us-east-1",
            aws_access_key_id=self.credentials.access_key,
            aws_secret_access_key=self.credentials.secret_key,
            aws_session_token=self.credentials.token,
        )

    def settings(self, stack: Stack, *, max_s: int | None = None, **target: Any) -> TunnelSettings:
        fields: dict[str, Any] = {
            "region": "us-east-1",
            "endpoint_id": stack.endpoint_id,
            "dns_name": stack.dns_name,
            "private_ip": stack.web.private_ip,
            "remote_port": 22,
        }
        fields.update(target)
        return TunnelSettings(
            target=TunnelTarget(**fields),
            credentials_provider=lambda: self.credentials,
            max_tunnel_duration=max_s,
            scheme="ws",
        )


def grant_document(
    stack: Stack, *, minutes: int = 30, start_offset_s: int = -60, port: int = 22
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return grant_policy(
        GrantScope(
            account_id=stack.estate.account_id,
            region="us-east-1",
            instance_id=stack.web.instance_id,
            endpoint_id=stack.endpoint_id,
            private_ip=stack.web.private_ip,
            port=port,
            os_user="ec2-user",
            starts_at=now + timedelta(seconds=start_offset_s),
            expires_at=now + timedelta(minutes=minutes),
            allow_describe=True,
        )
    )


def open_tunnels_settled(stack: Stack, timeout_s: float = 5.0) -> int:
    """Tunnels still open through the endpoint once closing has settled: a client sees the
    close frame a moment before the stand-in's side of the connection ends and gives the
    slot back, so wait (up to `timeout_s`) for the count to reach 0."""
    deadline = time.monotonic() + timeout_s
    while stack.tunnels.open_tunnels(stack.endpoint_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    return stack.tunnels.open_tunnels(stack.endpoint_id)


@contextmanager
def holding(stack: Stack, role: str, document: dict[str, Any] | None) -> Iterator[Person]:
    """Assume `role` with `document` as an inline policy for the duration of the block."""
    iam = stack.bot("iam")
    name = f"eice-grant-{uuid.uuid4().hex[:8]}"
    if document is not None:
        iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))
    issued = stack.bot("sts").assume_role(
        RoleArn=stack.estate.role_arns[role], RoleSessionName=f"{role}-{uuid.uuid4().hex[:6]}"
    )
    c = issued["Credentials"]
    person = Person(
        issued["AssumedRoleUser"]["Arn"],
        Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]),
    )
    try:
        yield person
    finally:
        if document is not None:
            iam.delete_role_policy(RoleName=role, PolicyName=name)


def ca_path(stack: Stack) -> Path:
    assert stack.tls_tunnels.ca_path is not None
    return stack.tls_tunnels.ca_path


@asynccontextmanager
async def local_end(tunnel: TunnelConnection) -> AsyncIterator[tuple[socket.socket, asyncio.Task[None]]]:
    """Carry `tunnel` to one end of a loopback socket pair, as `--local-port` does for an
    accepted connection; yields the other end (non-blocking, for `loop.sock_*`) and the
    task carrying the tunnel (it ends with the tunnel, raising what `carry` raises)."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    _, local = await loop.connect_accepted_socket(LocalConnection, ours)
    carrying = asyncio.create_task(carry(tunnel, local))
    try:
        yield theirs, carrying
    finally:
        theirs.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(carrying, 10)


async def recv_exactly(sock: socket.socket, size: int, timeout_s: float = 30) -> bytes:
    """Read `size` bytes from a non-blocking socket (fewer only if it ends first)."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(timeout_s):
        while len(data) < size:
            chunk = await loop.sock_recv(sock, min(2**18, size - len(data)))
            if not chunk:
                break
            data += chunk
    return bytes(data)


@contextmanager
def echo_instead_of_ssh(stack: Stack) -> Iterator[None]:
    """Point web-1:22 at a TCP echo service for the block (the instance's side of a bulk copy)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(2**18):
                conn.sendall(data)

    accept_forever(listener, echo)
    key = (stack.web.private_ip, 22)
    saved = stack.sandbox.targets[key]
    stack.sandbox.targets[key] = listener.getsockname()
    try:
        yield
    finally:
        stack.sandbox.targets[key] = saved
        listener.close()
