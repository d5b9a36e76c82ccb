"""`eice bench tunnel`: throughput and round trips through client + OpenTunnel stand-in,
against a direct loopback TCP connection to the same echo service, in the same run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

CHUNK = 2**18


def _echo_server() -> tuple[socket.socket, int]:
    """A threaded TCP echo service on loopback (one thread per connection, big reads)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(CHUNK):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener, listener.getsockname()[1]


def _throughput(port: int, size: int) -> float:
    """MB/s for `size` bytes sent and echoed back on one connection."""
    payload = os.urandom(CHUNK)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def send() -> None:
            sent = 0
            while sent < size:
                piece = payload[: min(CHUNK, size - sent)]
                conn.sendall(piece)
                sent += len(piece)

        started = time.perf_counter()
        writer = threading.Thread(target=send, daemon=True)
        writer.start()
        received = 0
        while received < size:
            data = conn.recv(CHUNK)
            if not data:
                raise RuntimeError(f"connection ended after {received} of {size} bytes")
            received += len(data)
        elapsed = time.perf_counter() - started
        writer.join()
    return size / elapsed / 1e6


def _rtt_p50_ms(port: int, samples: int) -> float:
    """Median round trip of a 64-byte message, in milliseconds."""
    message = b"x" * 64
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(samples + 5):
            started = time.perf_counter()
            conn.sendall(message)
            got = 0
            while got < len(message):
                got += len(conn.recv(4096))
            if index >= 5:  # warm-up round trips are not counted
                times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _grant(sandbox: Any, estate: Any) -> dict[str, str]:
    """Assume alice's role with a grant on web-1; returns the environment for the client."""
    import boto3

    from access.grants.policy import GrantScope, grant_policy
    from sandbox.aws.server import BOT_ACCESS_KEY_ID, BOT_SECRET_ACCESS_KEY

    bot = boto3.Session(
        aws_access_key_id=BOT_ACCESS_KEY_ID,
        aws_secret_access_key=BOT_SECRET_ACCESS_KEY,
        region_name=sandbox.region,
    )
    web = estate.instance("web-1")
    now = datetime.now(UTC)
    scope = GrantScope(
        account_id=estate.account_id,
        region=sandbox.region,
        instance_id=web.instance_id,
        endpoint_id=estate.endpoints["prod"].endpoint_id,
        private_ip=web.private_ip,
        port=22,
        os_user="ec2-user",
        starts_at=now - timedelta(minutes=1),
        expires_at=now + timedelta(hours=2),
    )
    bot.client("iam", endpoint_url=sandbox.url).put_role_policy(
        RoleName="alice",
        PolicyName="eice-grant-bench",
        PolicyDocument=json.dumps(grant_policy(scope)),
    )
    issued = bot.client("sts", endpoint_url=sandbox.url).assume_role(
        RoleArn=estate.role_arns["alice"], RoleSessionName="bench"
    )["Credentials"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(sandbox.env())
    env.update(
        AWS_ACCESS_KEY_ID=issued["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=issued["SecretAccessKey"],
        AWS_SESSION_TOKEN=issued["SessionToken"],
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        EICE_TUNNEL_SCHEME="ws",
    )
    return env


def _stand_in(echo_port: int) -> None:
    """Child process: sandbox + OpenTunnel stand-in + a grant; prints one JSON line, runs
    until stdin closes. Kept out of the measuring process so they do not share a GIL."""
    from sandbox.aws.eice import TunnelServer
    from sandbox.aws.seed import seed_estate
    from sandbox.aws.server import AwsSandbox

    sandbox = AwsSandbox().start()
    sandbox.reset()
    tunnels = TunnelServer(sandbox).start()
    try:
        estate = seed_estate(sandbox)
        web = estate.instance("web-1")
        sandbox.targets[(web.private_ip, 22)] = ("127.0.0.1", echo_port)
        ready = {"env": _grant(sandbox, estate), "instance_id": web.instance_id}
        print(json.dumps(ready), flush=True)
        sys.stdin.read()
    finally:
        tunnels.stop()
        sandbox.stop()


def bench_tunnel(json_out: bool, size_mb: int, rtt_samples: int) -> dict[str, Any]:
    """Run the tunnel benchmark; returns (and with `json_out` prints) the figures.

    Three processes over loopback: this one (echo service and load), the stand-in (with
    the AWS sandbox) and the tunnel client (`eice tunnel --local-port`).

    Args:
        json_out: print one JSON object instead of a short table.
        size_mb: megabytes (MiB) pushed through and echoed back for throughput.
        rtt_samples: round trips measured for the RTT median.
    """
    listener, echo_port = _echo_server()
    stand_in = subprocess.Popen(
        [sys.executable, "-m", "access.tunnel.bench", "--stand-in", str(echo_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    client: subprocess.Popen[str] | None = None
    try:
        assert stand_in.stdout is not None
        ready = json.loads(stand_in.stdout.readline() or "null")
        if not ready:
            raise RuntimeError("the OpenTunnel stand-in did not start")
        expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        client = subprocess.Popen(
            [sys.executable, "-m", "access.cli.main", "tunnel", ready["instance_id"],
             "--local-port", "0", "--expires", expires],
            env=ready["env"],
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert client.stderr is not None
        line = client.stderr.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if found is None:
            raise RuntimeError(f"the tunnel client did not start: {line.strip()}")
        tunnel_port = int(found.group(1))
        size = size_mb * 2**20
        direct_mb_s = _throughput(echo_port, size)
        tunnel_mb_s = _throughput(tunnel_port, size)
        direct_rtt = _rtt_p50_ms(echo_port, rtt_samples)
        tunnel_rtt = _rtt_p50_ms(tunnel_port, rtt_samples)
    finally:
        if client is not None:
            client.send_signal(signal.SIGINT)
            client.wait(10)
        if stand_in.stdin is not None:
            stand_in.stdin.close()
        stand_in.wait(10)
        listener.close()
    figures: dict[str, float] = {
        "throughput_mb_s": round(tunnel_mb_s, 1),
        "direct_throughput_mb_s": round(direct_mb_s, 1),
        "rtt_p50_ms": round(tunnel_rtt, 3),
        "direct_rtt_p50_ms": round(direct_rtt, 3),
    }
    ratios = {"throughput": round(tunnel_mb_s / direct_mb_s, 3)}
    result = {"benchmark": "tunnel", "figures": figures, "ratios": ratios}
    if json_out:
        print(json.dumps(result))
    else:
        for name, value in {**figures, **ratios}.items():
            print(f"{name:24} {value}")
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--stand-in"]:
        _stand_in(int(sys.argv[2]))
    else:
        bench_tunnel("--json" in sys.argv, 50, 500)
