"""`eice ssh` and `eice tunnel` against the whole stack, as a person would run them."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from access.grants.models import Grant
from access.grants.policy import GrantScope, grant_policy
from bot.blocks import access_commands

from .conftest import Person, Stack, ca_path, grant_document, holding

EICE = [sys.executable, "-m", "access.cli.main"]


def _expires(minutes: int = 30) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_eice_ssh_runs_a_command_on_the_instance(stack: Stack) -> None:
    with holding(stack, "alice", grant_document(stack)) as alice:
        done = subprocess.run(
            [*EICE, "ssh", stack.web.instance_id, "--expires", _expires(), "--", "hostname"],
            env=alice.env(stack),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (done.returncode, done.stdout, done.stderr) == (0, "web-1\n", "")


def test_the_dms_eice_ssh_command_works_as_given_for_a_grant_on_another_port(stack: Stack) -> None:
    """The requester pastes the DM's command: its region, port and OS user must be the grant's."""
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=30)
    grant = Grant(
        instance_id=stack.web.instance_id, os_user="ec2-user", endpoint_id=stack.endpoint_id,
        region="us-east-1", private_ip=stack.web.private_ip, port=2222, expires_at=expires,
    )  # fmt: skip
    [command, _ssh, tunnel] = access_commands(grant, stack.dns_name)
    assert command.startswith("eice ssh ") and "--port 2222" in command and "--region us-east-1" in command
    assert f"--instance-connect-endpoint-dns-name {stack.dns_name} " in tunnel
    described = {
        name: stack.sandbox.faults.counts[f"ec2:{name}"]
        for name in ("DescribeInstances", "DescribeInstanceConnectEndpoints")
    }
    ssh_server = stack.sandbox.targets[(stack.web.private_ip, 22)]
    stack.sandbox.targets[(stack.web.private_ip, 2222)] = ssh_server  # the instance's sshd on 2222
    try:
        with holding(stack, "alice", grant_document(stack, port=2222)) as alice:
            env = {k: v for k, v in alice.env(stack).items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
            pasted = subprocess.run(
                [*EICE, *shlex.split(command)[1:], "--", "hostname"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            on_22 = subprocess.run(
                [*EICE, *shlex.split(command.replace(" --port 2222", ""))[1:], "--", "hostname"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
    finally:
        del stack.sandbox.targets[(stack.web.private_ip, 2222)]
    assert (pasted.returncode, pasted.stdout, pasted.stderr) == (0, "web-1\n", "")
    assert on_22.returncode != 0 and "AccessDenied" in on_22.stderr  # the grant is for 2222 only
    # Told the endpoint and IP, it looked nothing up: the grant's permissions are enough.
    assert {name: stack.sandbox.faults.counts[f"ec2:{name}"] for name in described} == described


def test_eice_ssh_takes_its_region_from_aws_region_or_says_how_to_give_one(stack: Stack) -> None:
    with holding(stack, "alice", grant_document(stack)) as alice:
        env = {k: v for k, v in alice.env(stack).items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
        command = [*EICE, "ssh", stack.web.instance_id, "--expires", _expires(), "--", "hostname"]
        regional = subprocess.run(
            command, env={**env, "AWS_REGION": "us-east-1"}, capture_output=True, text=True
        )
        nowhere = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert (regional.returncode, regional.stdout) == (0, "web-1\n"), regional.stderr
    assert nowhere.returncode != 0
    assert (
        nowhere.stderr.strip()
        == "eice: no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION"
    )


def test_eice_ssh_over_wss_with_the_sandbox_ca(stack: Stack) -> None:
    env_extra = {"EICE_TUNNEL_SCHEME": "wss", "AWS_CA_BUNDLE": str(ca_path(stack))}
    with holding(stack, "alice", grant_document(stack)) as alice:
        done = subprocess.run(
            [
                *EICE,
                "ssh",
                stack.web.instance_id,
                "--dns-name",
                f"localhost:{stack.tls_tunnels.port}",
                "--os-user",
                "ec2-user",
                "--expires",
                _expires(),
                "--",
                "whoami",
            ],
            env=alice.env(stack, **env_extra),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (done.returncode, done.stdout) == (0, "ec2-user\n"), done.stderr


def test_eice_ssh_exit_code_is_ssh_exit_code(stack: Stack) -> None:
    with holding(stack, "alice", grant_document(stack)) as alice:
        done = subprocess.run(
            [*EICE, "ssh", stack.web.instance_id, "--expires", _expires(), "--", "uptime"],
            env=alice.env(stack),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 127
    assert "command not found" in done.stderr


def test_eice_ssh_without_a_grant_says_why_in_one_line(stack: Stack) -> None:
    with holding(stack, "bob", None) as bob:
        done = subprocess.run(
            [
                *EICE,
                "ssh",
                stack.web.instance_id,
                "--endpoint-id",
                stack.endpoint_id,
                "--private-ip",
                stack.web.private_ip,
                "--dns-name",
                stack.dns_name,
                "--",
                "hostname",
            ],
            env=bob.env(stack),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "SendSSHPublicKey refused: AccessDeniedException" in done.stderr


def _client_key() -> tuple[asyncssh.SSHKey, str]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return asyncssh.import_private_key(pem), public.decode() + " test"


async def _ssh_session(port: int, key: asyncssh.SSHKey, payload: bytes) -> tuple[str, str]:
    async with asyncssh.connect(
        "127.0.0.1", port, username="ec2-user", client_keys=[key], known_hosts=None
    ) as conn:
        who = await conn.run("whoami", check=True)
        echoed = await conn.run("cat", input=payload, encoding=None, check=True)
    assert isinstance(echoed.stdout, bytes)
    return str(who.stdout), hashlib.sha256(echoed.stdout).hexdigest()


def _start_listener(
    stack: Stack, who: Person, expires: str | None = None
) -> tuple[subprocess.Popen[str], int]:
    """`eice tunnel --local-port 0` as `who`, and the port it reports listening on."""
    listener = subprocess.Popen(
        [*EICE, "tunnel", stack.web.instance_id, "--local-port", "0", "--expires", expires or _expires()],
        env=who.env(stack),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert listener.stderr is not None
    line = listener.stderr.readline()
    found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert found is not None, line
    return listener, int(found.group(1))


def test_sigterm_ends_a_listener_whose_tunnel_is_still_open(stack: Stack) -> None:
    import socket

    with holding(stack, "alice", grant_document(stack)) as alice:
        listener, port = _start_listener(stack, alice)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as held:
                # The instance's SSH server speaks first: its banner means the tunnel is open.
                assert held.recv(64).startswith(b"SSH-2.0-")
                listener.send_signal(signal.SIGTERM)  # the SSH connection stays open
                code = listener.wait(15)
                assert held.recv(64) == b""  # and the listener closed it on its way out
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait()
    assert code == 0


def _banner(port: int) -> bytes:
    """What the instance's SSH server says first through a new tunnel (b"" if refused)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        return conn.recv(64)


def test_a_listener_asks_each_tunnel_for_no_more_than_the_grant_allows_then(stack: Stack) -> None:
    # A grant ending in 40 s whose last hour is cut into 5 s slices: from each slice on, the
    # policy refuses tunnels longer than the time left at the slice's start.
    now = datetime.now(UTC).replace(microsecond=0)
    scope = GrantScope(
        account_id=stack.estate.account_id,
        region="us-east-1",
        instance_id=stack.web.instance_id,
        endpoint_id=stack.endpoint_id,
        private_ip=stack.web.private_ip,
        port=22,
        os_user="ec2-user",
        starts_at=now - timedelta(minutes=1),
        expires_at=now + timedelta(seconds=40),
        overshoot_s=5,
        allow_describe=True,
    )
    with holding(stack, "alice", grant_policy(scope)) as alice:
        expires = scope.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        listener, port = _start_listener(stack, alice, expires)
        try:
            assert _banner(port).startswith(b"SSH-2.0-")
            time.sleep(12)  # two slices later: the listener started with more time left than is left now
            assert _banner(port).startswith(b"SSH-2.0-")
        finally:
            listener.send_signal(signal.SIGTERM)
            listener.wait(15)
    assert listener.stderr is not None
    assert "refused" not in listener.stderr.read()


@pytest.mark.slow
def test_local_port_listener_carries_ssh_and_20_mib_intact(stack: Stack) -> None:
    import asyncio

    payload = os.urandom(20 * 2**20)
    with holding(stack, "alice", grant_document(stack)) as alice:
        key, public = _client_key()
        listener, port = _start_listener(stack, alice)
        try:
            alice.client(stack, "ec2-instance-connect").send_ssh_public_key(
                InstanceId=stack.web.instance_id, InstanceOSUser="ec2-user", SSHPublicKey=public
            )
            who, digest = asyncio.run(_ssh_session(port, key, payload))
            # A second connection gets its own tunnel (and its own presigned URL).
            again, _ = asyncio.run(_ssh_session(port, key, b"x"))
        finally:
            listener.send_signal(signal.SIGTERM)
            listener.wait(10)
    assert who == again == "ec2-user\n"
    assert digest == hashlib.sha256(payload).hexdigest()
    opened = [
        e
        for e in stack.sandbox.events.all()
        if e["eventName"] == "OpenTunnel" and e["userIdentity"]["arn"] == alice.arn
    ]
    assert len(opened) == 2 and not any("errorCode" in e for e in opened)


def test_bad_ports_are_usage_errors_and_a_taken_port_one_line(stack: Stack) -> None:
    import socket

    taken = socket.create_server(("127.0.0.1", 0))
    busy = taken.getsockname()[1]
    instance = stack.web.instance_id
    usage = 2  # argparse's status for a bad flag: checked before anything is looked up
    with taken, holding(stack, "alice", grant_document(stack)) as alice:
        for args, status, said in (
            (
                ["tunnel", instance, "--local-port", "70000"],
                usage,
                "argument --local-port: '70000' is not between 0 (any free port) and 65535",
            ),
            (["tunnel", instance, "--local-port", "-1"], usage, "argument --local-port: '-1' is not between"),
            (["tunnel", instance, "--local-port", "²"], usage, "argument --local-port: '²' is not between"),
            (["tunnel", instance, "--remote-port", "0"], usage, "'0' is not between 1 and 65535"),
            (
                ["tunnel", instance, "--local-port", "0", "--max-connections", "0"],
                usage,
                "argument --max-connections: '0' must be a whole number, at least 1",
            ),
            (["ssh", instance, "--port", "65536"], usage, "argument --port: '65536' is not between 1"),
            (["tunnel", instance, "--max-tunnel-duration", "0"], usage, "'0' is not between 1 and 3600"),
            (["tunnel", instance, "--expires", "yesterday"], usage, "not an ISO 8601 time: 'yesterday'"),
            (["tunnel", instance, "--local-port", str(busy)], 1, f"cannot listen on 127.0.0.1:{busy}: "),
        ):
            window = [] if {"--expires", "--max-tunnel-duration"} & set(args) else ["--expires", _expires()]
            done = subprocess.run(
                [*EICE, *args, *window],
                env=alice.env(stack),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == status, (args, done.stderr)
            assert said in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
            if status == 1:  # a runtime error: one line; a usage error adds argparse's usage line
                assert len(done.stderr.strip().splitlines()) == 1, done.stderr
