"""The audit benchmark runs small and reports its figures in the agreed shape."""

from __future__ import annotations

from access.audit.bench import bench_audit


def test_a_small_audit_bench_reports_sqlite_percentiles() -> None:
    result = bench_audit(rows=3000, grants=300, queries=30, postgres_url=None)

    assert result["benchmark"] == "audit"
    assert result["ratios"] == {}
    figures = result["figures"]
    assert 0 < figures["sqlite_p50_ms"] <= figures["sqlite_p99_ms"]
