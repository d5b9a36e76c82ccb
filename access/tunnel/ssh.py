"""`eice ssh`: an ephemeral Ed25519 key, pushed with SendSSHPublicKey, and the system ssh."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from access.tunnel.errors import TunnelError
from access.tunnel.target import TunnelTarget

SSH = "/usr/bin/ssh"


@contextmanager
def ephemeral_key() -> Iterator[tuple[Path, str]]:
    """(private key path, OpenSSH public key) in a private directory removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="eice-ssh-"))  # created 0700
    try:
        key = Ed25519PrivateKey.generate()
        path = directory / "id_ed25519"
        path.touch(mode=0o600)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        yield path, public.decode() + " eice-access"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def push_key(session: Any, instance_id: str, os_user: str, public_key: str) -> None:
    """SendSSHPublicKey: the key is honoured for 60 seconds."""
    client = session.client("ec2-instance-connect")
    try:
        client.send_ssh_public_key(InstanceId=instance_id, InstanceOSUser=os_user, SSHPublicKey=public_key)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise TunnelError(
            f"SendSSHPublicKey refused: {error.get('Code', 'Error')}: {error.get('Message', '')}"
        ) from None
    except BotoCoreError as exc:
        raise TunnelError(f"SendSSHPublicKey failed: {exc}") from None


def proxy_command(target: TunnelTarget, max_tunnel_duration: int | None) -> str:
    """The ProxyCommand: this same Python running the stdin/stdout tunnel."""
    argv = [
        sys.executable,
        "-m",
        "access.tunnel",
        target.instance_id or target.private_ip,
        "--region",
        target.region,
        "--endpoint-id",
        target.endpoint_id,
        "--dns-name",
        target.dns_name,
        "--private-ip",
        target.private_ip,
        "--remote-port",
        str(target.remote_port),
    ]
    if max_tunnel_duration is not None:
        argv += ["--max-tunnel-duration", str(max_tunnel_duration)]
    # ssh expands %-tokens in ProxyCommand.
    return shlex.join(argv).replace("%", "%%")


def ssh_argv(
    *,
    target: TunnelTarget,
    key_path: Path,
    os_user: str,
    max_tunnel_duration: int | None,
    ssh_options: Sequence[str] = (),
    command: Sequence[str] = (),
) -> list[str]:
    """The full ssh command line."""
    argv = [
        SSH,
        "-o", f"ProxyCommand={proxy_command(target, max_tunnel_duration)}",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes",
        "-o", "LogLevel=ERROR",
        "-i", str(key_path),
        "-l", os_user,
    ]  # fmt: skip
    for option in ssh_options:
        argv += ["-o", option]
    argv.append(target.instance_id or target.private_ip)
    argv += list(command)
    return argv


def run_ssh(
    session: Any,
    target: TunnelTarget,
    *,
    os_user: str,
    max_tunnel_duration: int | None,
    ssh_options: Sequence[str] = (),
    command: Sequence[str] = (),
) -> int:
    """Push a fresh key and run ssh through the tunnel; returns ssh's exit code."""
    if not target.instance_id or not target.instance_id.startswith("i-"):
        raise TunnelError("eice ssh needs an instance id (i-...) to push the key to")
    if not Path(SSH).exists():
        raise TunnelError(f"{SSH} not found: install the OpenSSH client")
    with ephemeral_key() as (key_path, public_key):
        push_key(session, target.instance_id, os_user, public_key)
        argv = ssh_argv(
            target=target,
            key_path=key_path,
            os_user=os_user,
            max_tunnel_duration=max_tunnel_duration,
            ssh_options=ssh_options,
            command=command,
        )
        return subprocess.run(argv, check=False).returncode
