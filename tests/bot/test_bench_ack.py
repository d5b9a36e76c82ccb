"""`eice bench ack`: a short run that really fires signed commands at both servers."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

from access.errors import InvalidInput
from bot.bench_ack import _split, arrivals, bench_ack


def test_a_short_run_reports_both_servers_and_every_command_was_handled() -> None:
    # Its own process: moto's state is process-wide and this package has its own estate.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.bench_ack",
            *["--n", "12", "--concurrency", "4", "--rate", "20", "--rounds", "2", "--json"],
            *["--sandbox-nice", "5"],
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    figures = result["figures"]
    assert result["benchmark"] == "ack"
    assert set(figures) >= {"ack_p50_ms", "ack_p99_ms", "bare_p50_ms", "bare_p99_ms"}
    for name in ("ack_p50_ms", "ack_p99_ms", "bare_p50_ms", "bare_p99_ms"):
        assert figures[name] > 0
    assert figures["ack_p50_ms"] <= figures["ack_p99_ms"]
    assert figures["bare_p50_ms"] <= figures["bare_p99_ms"]
    assert (figures["commands"], figures["rate_per_s"], figures["rounds"]) == (12, 20.0, 2)
    assert figures["sandbox_nice"] == 5
    assert figures["sandbox_idle"] is True  # the default: the stand-ins leave the servers the CPU
    # Ten warm-up commands and twelve measured ones, each a new request with its own card.
    assert figures["approval_cards"] == 22
    assert result["ratios"]["ack_p99"] == round(figures["ack_p99_ms"] / figures["bare_p99_ms"], 3)
    assert result["ratios"]["ack_p50"] == round(figures["ack_p50_ms"] / figures["bare_p50_ms"], 3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"concurrency": 0},
        {"rate": 0.0},
        {"rate": -1.0},
        {"rounds": 0},
        {"sandbox_nice": -1},
        {"sandbox_nice": 20},
    ],
)
def test_bad_sizes_are_refused_before_anything_starts(kwargs: dict[str, float]) -> None:
    args = {"n": 10, "concurrency": 2, "rate": 5.0, "rounds": 2, "sandbox_nice": 0} | kwargs
    with pytest.raises(InvalidInput):
        bench_ack(
            int(args["n"]),
            int(args["concurrency"]),
            rate=args["rate"],
            rounds=int(args["rounds"]),
            sandbox_nice=int(args["sandbox_nice"]),
        )


def test_arrivals_are_a_repeatable_poisson_schedule_at_the_mean_rate() -> None:
    schedule = arrivals(4000, 10.0, seed=7)

    assert schedule == arrivals(4000, 10.0, seed=7)
    assert schedule != arrivals(4000, 10.0, seed=8)
    assert schedule[0] == 0.0
    assert all(b >= a for a, b in itertools.pairwise(schedule))
    assert 350 < schedule[-1] < 450  # 4000 arrivals at 10/s take about 400 s


def test_rounds_split_the_commands_without_losing_any() -> None:
    assert _split(300, 6) == [50] * 6
    assert _split(7, 3) == [3, 2, 2]
    assert _split(2, 6) == [1, 1]
