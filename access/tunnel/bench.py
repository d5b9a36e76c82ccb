"""`eice bench tunnel`: throughput and round trips through client + OpenTunnel stand-in,
against a direct loopback TCP connection to the same echo service, in the same run.

Four processes over loopback, on the same footing for both paths: this one (the load:
a sender thread and a receiver), an echo service standing in for the instance, the
stand-in (with the AWS sandbox) and the tunnel client (`eice tunnel --local-port`).
Direct is load -> echo; the tunnel is load -> client -> stand-in -> echo. Each timed
transfer starts on a connection that has already carried a round trip, so the tunnel's
handshake is not counted as transfer time; direct and tunnel alternate for `ROUNDS`
rounds and the medians are reported, which keeps a busy machine from favouring one.
CPU time per MiB moved (all processes) is reported beside throughput: it does not
depend on how busy the machine is, and when the cores are shared the throughput ratio
tends to the inverse of the CPU ratio.

Two more paths, in the same rounds, give the ceiling of the layout itself: load -> relay
-> relay -> echo with pass-through relays that do no work (`access.tunnel.relays`), one
copying bytes through user space and one splicing them in the kernel. No client and
endpoint pair can beat them on the same machine; `tunnel_vs_relay` says how close this
one comes.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from access.errors import InvalidInput
from access.tunnel.relays import CHUNK, serve_connections, serve_relay, splice_available

ROUNDS = 7
SIZE_MB = 200  # MiB echoed per round and path
SETUP = (
    "processes on loopback: load (this one), echo service, OpenTunnel stand-in, tunnel client, "
    "pass-through relays; direct = load->echo, tunnel = load->client->stand-in->echo, "
    "relay / splice relay = load->relay->relay->echo; handshake not timed; "
    f"median of {ROUNDS} alternating rounds; client and stand-in event loop: "
)


PREFIX = {"tunnel": "", "direct": "direct_", "relay": "relay_", "splice": "splice_relay_"}  # figure names


def _setup() -> str:
    """How this run was set up, including which event loop the tunnel's processes use."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return SETUP + "asyncio"
    return SETUP + "uvloop"


def _serve_echo() -> None:
    """Child process: a threaded TCP echo service on loopback (one thread per connection,
    big reads); prints its port, runs until stdin closes."""

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(CHUNK):
                conn.sendall(data)

    serve_connections(serve)


def _connect(port: int) -> socket.socket:
    """A connection that has already carried one round trip (so a tunnel is open)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=60)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(b"!")
    if conn.recv(1) != b"!":
        conn.close()
        raise RuntimeError(f"no echo through port {port}")
    return conn


def _throughput(port: int, size: int) -> float:
    """MB/s for `size` bytes sent and echoed back on one (already open) connection."""
    payload = os.urandom(CHUNK)
    with _connect(port) as conn:

        def send() -> None:
            sent = 0
            while sent < size:
                piece = payload[: min(CHUNK, size - sent)]
                conn.sendall(piece)
                sent += len(piece)

        buffer = bytearray(CHUNK)
        started = time.perf_counter()
        writer = threading.Thread(target=send, daemon=True)
        writer.start()
        received = 0
        while received < size:
            got = conn.recv_into(buffer)
            if not got:
                raise RuntimeError(f"connection ended after {received} of {size} bytes")
            received += got
        elapsed = time.perf_counter() - started
        writer.join()
    return size / elapsed / 1e6


def _rtt_p50_ms(port: int, samples: int) -> float:
    """Median round trip of a 64-byte message, in milliseconds."""
    message = b"x" * 64
    times = []
    with _connect(port) as conn:
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
    from access.grants.policy import GrantScope, grant_policy
    from sandbox.aws.account import bot_session

    bot = bot_session(sandbox.region)
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


def _child(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if env is not None else None,
        env=env,
        text=True,
    )


def _stop(child: subprocess.Popen[str]) -> None:
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(10)


def _cpu_s(pids: list[int]) -> float | None:
    """CPU seconds (user + system) used so far by this process and `pids`; None off Linux."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def _measure(ports: dict[str, int], pids: list[int], size: int, rtt_samples: int) -> dict[str, Any]:
    """Alternating rounds over every path in `ports`, then the round trips of direct and tunnel.

    CPU per MiB counts every process of the bench (load, echo, stand-in, client, relays):
    on a busy machine throughput follows CPU cost, so the cost ratio explains the
    throughput one. Returns, per path, the median speed ("speed", MB/s) and ratio to direct
    ("ratio"), the CPU per MiB ("cpu_per_mb_ms"), and the RTT medians of tunnel and direct
    ("rtt_ms").
    """
    speeds: dict[str, list[float]] = {path: [] for path in ports}
    cpu: dict[str, float] = dict.fromkeys(ports, 0.0)
    ratios: dict[str, list[float]] = {path: [] for path in ports}
    for _ in range(ROUNDS):
        for path, port in ports.items():
            before = _cpu_s(pids)
            speeds[path].append(_throughput(port, size))
            after = _cpu_s(pids)
            if before is not None and after is not None:
                cpu[path] += after - before
        for path in ports:
            ratios[path].append(speeds[path][-1] / speeds["direct"][-1])
    mib = ROUNDS * size / 2**20
    return {
        "speed": {path: statistics.median(values) for path, values in speeds.items()},
        "ratio": {path: statistics.median(values) for path, values in ratios.items()},
        "cpu_per_mb_ms": {path: round(spent * 1000 / mib, 2) for path, spent in cpu.items() if spent > 0},
        "rtt_ms": {path: _rtt_p50_ms(ports[path], rtt_samples) for path in ("tunnel", "direct")},
    }


def _figures(measured: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """The agreed figures and ratios from `_measure`'s medians."""
    speed, ratio, cpu, rtt = (measured[key] for key in ("speed", "ratio", "cpu_per_mb_ms", "rtt_ms"))
    figures = {
        "throughput_mb_s": round(speed["tunnel"], 1),
        "direct_throughput_mb_s": round(speed["direct"], 1),
        "rtt_p50_ms": round(rtt["tunnel"], 3),
        "direct_rtt_p50_ms": round(rtt["direct"], 3),
    }
    ratios = {"throughput": round(ratio["tunnel"], 3)}
    for path in ("relay", "splice"):
        if path in speed:
            figures[f"{PREFIX[path]}throughput_mb_s"] = round(speed[path], 1)
            ratios[f"{PREFIX[path]}throughput"] = round(ratio[path], 3)
    if "relay" in speed:
        ratios["tunnel_vs_relay"] = round(speed["tunnel"] / speed["relay"], 3)
    for path, spent in cpu.items():
        figures[f"{PREFIX[path]}cpu_per_mb_ms"] = spent
    return figures, ratios


def _relay_chain(upstream_port: int, kind: str, children: list[subprocess.Popen[str]]) -> int:
    """Start two pass-through relays in front of `upstream_port`; returns the outer port."""
    port = upstream_port
    for _ in range(2):
        relay = _child("access.tunnel.bench", "--relay", str(port), kind)
        children.append(relay)
        assert relay.stdout is not None
        port = int(relay.stdout.readline() or 0)
        if not port:
            raise RuntimeError(f"a {kind} relay did not start")
    return port


def bench_tunnel(json_out: bool, size_mb: int, rtt_samples: int) -> dict[str, Any]:
    """Run the tunnel benchmark; returns the figures (and with `json_out` prints them).

    Args:
        json_out: also print the result as one JSON object.
        size_mb: megabytes (MiB) pushed through and echoed back per round and path.
        rtt_samples: round trips measured for each RTT median.
    """
    if size_mb < 1 or rtt_samples < 1:
        raise InvalidInput("--size-mb and --rtt-samples must be at least 1")
    setup = _setup()
    print(f"setup: {setup}", file=sys.stderr, flush=True)
    echo = _child("access.tunnel.bench", "--echo")
    stand_in: subprocess.Popen[str] | None = None
    client: subprocess.Popen[str] | None = None
    relays: list[subprocess.Popen[str]] = []
    try:
        assert echo.stdout is not None
        echo_port = int(echo.stdout.readline() or 0)
        if not echo_port:
            raise RuntimeError("the echo service did not start")
        stand_in = _child("access.tunnel.bench", "--stand-in", str(echo_port))
        assert stand_in.stdout is not None
        ready = json.loads(stand_in.stdout.readline() or "null")
        if not ready:
            raise RuntimeError("the OpenTunnel stand-in did not start")
        expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        client = _child(
            "access.cli.main", "tunnel", ready["instance_id"], "--local-port", "0", "--expires", expires,
            env=ready["env"],
        )  # fmt: skip
        assert client.stderr is not None
        line = client.stderr.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if found is None:
            raise RuntimeError(f"the tunnel client did not start: {line.strip()}")
        ports = {"direct": echo_port, "tunnel": int(found.group(1))}
        ports["relay"] = _relay_chain(echo_port, "copy", relays)
        if splice_available():
            ports["splice"] = _relay_chain(echo_port, "splice", relays)
        measured = _measure(
            ports,
            [child.pid for child in (echo, stand_in, client, *relays)],
            size_mb * 2**20,
            rtt_samples,
        )
    finally:
        if client is not None:
            client.send_signal(signal.SIGTERM)
            client.wait(10)
        for child in (*relays, stand_in, echo):
            if child is not None:
                _stop(child)
    figures, ratios = _figures(measured)
    result = {"benchmark": "tunnel", "setup": setup, "figures": figures, "ratios": ratios}
    if json_out:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--stand-in"]:
        _stand_in(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--echo"]:
        _serve_echo()
    elif sys.argv[1:2] == ["--relay"]:
        serve_relay(int(sys.argv[2]), sys.argv[3])
    else:
        print(json.dumps(bench_tunnel(False, SIZE_MB, 500)))
