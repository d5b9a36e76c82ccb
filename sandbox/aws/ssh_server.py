"""SSH servers standing in for EC2 instances: they honour keys pushed with SendSSHPublicKey."""

from __future__ import annotations

import asyncio
import shlex
import threading
from concurrent.futures import Future
from typing import Any

import asyncssh

from sandbox.aws.instance_connect import PushedKeys, find_instance

COMMANDS = ("whoami", "hostname", "echo", "cat")


class _InstanceServer(asyncssh.SSHServer):
    """Public-key auth only, and only for keys pushed to this instance for this OS user."""

    def __init__(self, instance_id: str, keys: PushedKeys) -> None:
        self.instance_id = instance_id
        self.keys = keys

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        for text in self.keys.valid(self.instance_id, username):
            try:
                pushed = asyncssh.import_public_key(text)
            except (asyncssh.KeyImportError, ValueError):
                continue
            if pushed.public_data == key.public_data:
                return True
        return False


async def _run(process: asyncssh.SSHServerProcess, hostname: str) -> None:
    command = process.command
    try:
        argv = shlex.split(command) if command else []
    except ValueError:
        argv = ["?"]
    if not argv:
        process.stdout.write(b"This sandbox instance runs only: " + " ".join(COMMANDS).encode() + b"\n")
        process.exit(1)
        return
    name, args = argv[0], argv[1:]
    if name == "whoami":
        process.stdout.write(process.get_extra_info("username").encode() + b"\n")
    elif name == "hostname":
        process.stdout.write(hostname.encode() + b"\n")
    elif name == "echo":
        process.stdout.write(" ".join(args).encode() + b"\n")
    elif name == "cat":
        try:
            while chunk := await process.stdin.read(2**17):
                process.stdout.write(chunk)
                await process.stdout.drain()
        except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged, asyncssh.SignalReceived):
            pass
    else:
        process.stderr.write(f"{name}: command not found\n".encode())
        process.exit(127)
        return
    process.exit(0)


class InstanceSshServers:
    """One asyncssh server per instance on 127.0.0.1, registered in `sandbox.targets`.

    Args:
        sandbox: the AwsSandbox (for `targets`).
        keys: the keys SendSSHPublicKey pushed (shared with InstanceConnectService).
        region: the region whose instances `serve_running()` serves.
    """

    def __init__(self, sandbox: Any, keys: PushedKeys, *, region: str = "us-east-1") -> None:
        self.sandbox = sandbox
        self.keys = keys
        self.region = region
        self.ports: dict[str, int] = {}
        self._servers: dict[str, asyncssh.SSHAcceptor] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="instance-ssh", daemon=True)
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")

    def start(self) -> InstanceSshServers:
        self._thread.start()
        return self

    def stop(self) -> None:
        async def close_all() -> None:
            for server in self._servers.values():
                server.close()
                await server.wait_closed()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def serve(self, instance_id: str) -> int:
        """Start (once) the SSH server for one instance; returns its loopback port."""
        if instance_id in self.ports:
            return self.ports[instance_id]
        instance = find_instance(instance_id)
        if instance is None:
            raise KeyError(f"no such instance: {instance_id}")
        tags = {t["key"]: t["value"] for t in instance.get_tags()}
        hostname = tags.get("Name", instance_id)

        async def listen() -> asyncssh.SSHAcceptor:
            return await asyncssh.create_server(
                lambda: _InstanceServer(instance_id, self.keys),
                "127.0.0.1",
                0,
                server_host_keys=[self._host_key],
                process_factory=lambda process: _run(process, hostname),
                encoding=None,
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
                allow_pty=False,
            )

        future: Future[asyncssh.SSHAcceptor] = asyncio.run_coroutine_threadsafe(listen(), self._loop)
        server = future.result(10)
        port = server.sockets[0].getsockname()[1]
        self._servers[instance_id] = server
        self.ports[instance_id] = port
        self.sandbox.targets[(str(instance.private_ip), 22)] = ("127.0.0.1", port)
        return port

    def serve_running(self) -> dict[str, int]:
        """Serve every running instance in the region; returns instance id -> port."""
        from moto.ec2.models import ec2_backends

        for per_account in list(ec2_backends.values()):
            backend = per_account.get(self.region) if hasattr(per_account, "get") else None
            if backend is None:
                continue
            for instance in backend.all_instances():
                if instance.state == "running":
                    self.serve(instance.id)
        return dict(self.ports)
