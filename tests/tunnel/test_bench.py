"""`eice bench tunnel` runs small, reports its figures in the agreed shape, refuses bad sizes."""

from __future__ import annotations

import pytest

from access.errors import InvalidInput
from access.tunnel.bench import bench_tunnel


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
    assert set(result["ratios"]) == {"throughput"}
    assert result["ratios"]["throughput"] > 0


@pytest.mark.parametrize(("size_mb", "samples"), [(0, 20), (2, 0), (-1, 5)])
def test_sizes_below_one_are_refused_before_anything_starts(size_mb: int, samples: int) -> None:
    with pytest.raises(InvalidInput, match="at least 1"):
        bench_tunnel(False, size_mb, samples)
