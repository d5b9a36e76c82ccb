"""Short runs of the benchmarks at scale: every figure is there and the figures agree with each other.

No timing is asserted here; the targets are for full-size `eice bench` runs.
"""

from __future__ import annotations

import json

import pytest

from access.bench.catchup import bench_catch_up
from access.bench.lifecycle import bench_lifecycle
from access.bench.revoke import bench_revoke
from access.cli.main import main
from bot.actions import Action
from tests.dbs import POSTGRES_URL


def test_revoke_storm_on_both_databases_revokes_every_grant_once() -> None:
    result = bench_revoke(24, 2.0, postgres_url=POSTGRES_URL, ack_rate=4.0)
    figures = result["figures"]
    assert result["benchmark"] == "revoke"
    for db in ("sqlite", "postgres"):
        assert figures[f"{db}_revoked"] == 24
        assert figures[f"{db}_policies_left"] == 0
        assert figures[f"{db}_seeded_late"] == 0
        # Nothing is revoked before it expires, and the order statistics are ordered.
        assert 0 <= figures[f"{db}_lag_p50_s"] <= figures[f"{db}_lag_p99_s"] <= figures[f"{db}_lag_max_s"]
    assert figures["iam_calls_per_grant"] == 1.0
    assert figures["peak_rss_mb"] > 0
    assert figures["storm_acks"] > 0 and figures["storm_ack_failures"] == 0
    assert 0 < figures["storm_ack_p50_ms"] <= figures["storm_ack_p99_ms"]
    assert result["ratios"]["storm_ack_p99"] == pytest.approx(
        figures["storm_ack_p99_ms"] / figures["calm_ack_p99_ms"], rel=0.01
    )


def test_catch_up_revokes_every_overdue_grant_before_the_first_ack() -> None:
    figures = bench_catch_up(30, 1.0)["figures"]
    assert figures["overdue"] == 30
    assert figures["revoked"] == 30
    assert figures["iam_calls_per_grant"] == 1.0
    assert figures["first_ack_after_last_revoke"] == 1
    assert 0 < figures["catch_up_s"] <= figures["first_ack_after_s"]


def test_lifecycle_counts_each_finished_lifecycle() -> None:
    figures = bench_lifecycle(4, 2, actions=(Action.APPROVE, Action.REVOKE))["figures"]
    assert figures["lifecycles"] == 4
    assert figures["lifecycles_per_s"] == pytest.approx(4 / figures["elapsed_s"], rel=0.01)
    assert 0 < figures["lifecycle_p50_s"] <= figures["lifecycle_p99_s"]


def test_cli_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "catch-up", "--overdue", "10", "--window-s", "0.5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"benchmark", "figures", "ratios"}
    assert printed["benchmark"] == "catch-up"
    assert printed["figures"]["overdue"] == 10


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "revoke", "--grants", "0"],
        ["bench", "revoke", "--window-s", "-1"],
        ["bench", "catch-up", "--overdue", "0"],
        ["bench", "lifecycle", "--workers", "0"],
        ["bench", "revoke", "--db", "postgres", "--postgres-url", ""],
    ],
)
def test_bad_sizes_are_refused_before_anything_runs(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("eice bench: ") and captured.out == ""
