"""`eice bench tunnel` runs small, reports its figures in the agreed shape, refuses bad sizes;
its pass-through relays carry bytes intact."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading

import pytest

from access.errors import InvalidInput
from access.tunnel.bench import _child, _relay_chain, _stop, bench_tunnel
from access.tunnel.relays import splice_available


@pytest.mark.slow
def test_a_small_tunnel_bench_reports_throughput_and_round_trips_beside_direct() -> None:
    # 16 MiB: at a few MiB the fixed costs (connecting, threads) swamp the per-MiB CPU figures.
    result = bench_tunnel(False, 16, 20)

    assert result["benchmark"] == "tunnel"
    assert "load->client->stand-in->echo" in result["setup"]
    figures = result["figures"]
    assert set(figures) >= {"throughput_mb_s", "direct_throughput_mb_s", "rtt_p50_ms", "direct_rtt_p50_ms"}
    assert all(value > 0 for value in figures.values())
    # Linux: CPU cost of moving a MiB through each path; the tunnel's two relays cost more.
    assert figures["cpu_per_mb_ms"] > figures["direct_cpu_per_mb_ms"]
    # The ceiling of the layout: two pass-through relays in the same positions, same rounds.
    assert figures["relay_throughput_mb_s"] > 0
    assert figures["relay_cpu_per_mb_ms"] > figures["direct_cpu_per_mb_ms"]
    ratios = result["ratios"]
    expected = {"throughput", "relay_throughput", "tunnel_vs_relay"}
    if splice_available():
        expected.add("splice_relay_throughput")
        assert figures["splice_relay_throughput_mb_s"] > 0
    assert set(ratios) == expected
    assert all(value > 0 for value in ratios.values())
    assert ratios["tunnel_vs_relay"] == pytest.approx(
        figures["throughput_mb_s"] / figures["relay_throughput_mb_s"], rel=0.01
    )


@pytest.mark.parametrize("kind", ["copy", pytest.param("splice", marks=pytest.mark.skipif(
    not splice_available(), reason="splice() is Linux-only"))])  # fmt: skip
def test_a_relay_chain_carries_a_bulk_stream_intact_both_ways_and_passes_eof_on(kind: str) -> None:
    children: list[subprocess.Popen[str]] = []
    echo = _child("access.tunnel.bench", "--echo")
    children.append(echo)
    try:
        assert echo.stdout is not None
        port = _relay_chain(int(echo.stdout.readline()), kind, children)
        payload = os.urandom(8 * 2**20 + 17)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:

            def send() -> None:
                conn.sendall(payload)
                conn.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=send)
            sender.start()
            echoed = hashlib.sha256()
            size = 0
            while chunk := conn.recv(2**16):  # ends only when EOF came back through both relays
                echoed.update(chunk)
                size += len(chunk)
            sender.join()
        assert size == len(payload)
        assert echoed.hexdigest() == hashlib.sha256(payload).hexdigest()
    finally:
        for child in children:
            _stop(child)
    assert all(child.returncode == 0 for child in children)


@pytest.mark.parametrize(("size_mb", "samples"), [(0, 20), (2, 0), (-1, 5)])
def test_sizes_below_one_are_refused_before_anything_starts(size_mb: int, samples: int) -> None:
    with pytest.raises(InvalidInput, match="at least 1"):
        bench_tunnel(False, size_mb, samples)
