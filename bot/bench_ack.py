"""`bench ack`: ack latency of `eice serve --http` against a Bolt app that only acks.

Both run as real subprocesses on the same waitress stack, against the local AWS and
Slack sandboxes; signed `/eice request` commands are fired from this process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

SECRET = "bench-signing-secret"
USERS = ("U0ALICE", "U0BOB", "U0CAROL")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _fire(url: str, slack: Any, n: int, concurrency: int) -> list[float]:
    from sandbox.slack.driver import SlackDriver

    def one(i: int) -> float:
        driver = SlackDriver(bot_url=url + "/slack/events", signing_secret=SECRET, slack=slack)
        try:
            answer = driver.command(USERS[i % len(USERS)], f"request web-1 30m bench {i}")
            if answer.status != 200:
                raise RuntimeError(f"ack failed: {answer.status} {answer.body[:200]}")
            return answer.elapsed_ms
        finally:
            driver.close()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, range(n)))


def bench_ack(n: int = 200, concurrency: int = 8, json_output: bool = False) -> dict[str, Any]:
    """Run the benchmark; returns `{"benchmark": "ack", "figures": {...}, "ratios": {...}}`.

    Args:
        n: signed commands sent to each server (after a short warm-up).
        concurrency: commands in flight at once.
        json_output: print the result as one JSON line too.
    """
    from access.migrate import upgrade
    from sandbox.aws.seed import seed_estate
    from sandbox.aws.server import AwsSandbox
    from sandbox.slack.server import DEFAULT_TOKEN, SlackSandbox

    with (
        AwsSandbox() as aws,
        SlackSandbox() as slack,
        tempfile.TemporaryDirectory(prefix="eice-bench-") as tmp,
    ):
        estate = seed_estate(aws)
        config = Path(tmp) / "eice.toml"
        principals = "\n".join(f'U0{name.upper()} = "{arn}"' for name, arn in estate.role_arns.items())
        config.write_text(
            '[defaults]\napprovers = ["U0BOB", "S0ONCALL"]\napprovals_channel = "C0APPROVALS"\n'
            f"\n[principals]\n{principals}\n"
        )
        db_url = f"sqlite:///{tmp}/bench.sqlite"
        upgrade(db_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK_", "EICE_"))}
        env.update(aws.env())
        env.update(
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
            SLACK_BOT_TOKEN=DEFAULT_TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            EICE_SLACK_API_URL=slack.url + "/api/",
            EICE_DATABASE_URL=db_url,
            EICE_CONFIG=str(config),
            EICE_LOG_LEVEL="ERROR",
        )
        bot_port, bare_port = _port(), _port()
        py = sys.executable
        bot = subprocess.Popen(
            [py, "-m", "access.cli.main", "serve", "--http", "--port", str(bot_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        bare = subprocess.Popen(
            [py, "-m", "bot.bare_app", "--port", str(bare_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            bot_url, bare_url = f"http://127.0.0.1:{bot_port}", f"http://127.0.0.1:{bare_port}"
            _wait_healthy(bot_url, bot)
            _wait_healthy(bare_url, bare)
            warm = max(10, n // 10)
            _fire(bot_url, slack, warm, concurrency)
            _fire(bare_url, slack, warm, concurrency)
            ack = _fire(bot_url, slack, n, concurrency)
            baseline = _fire(bare_url, slack, n, concurrency)
        finally:
            for process in (bot, bare):
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
    figures = {
        "ack_p50_ms": round(statistics.median(ack), 3),
        "ack_p99_ms": round(_percentile(ack, 0.99), 3),
        "bare_p50_ms": round(statistics.median(baseline), 3),
        "bare_p99_ms": round(_percentile(baseline, 0.99), 3),
    }
    result = {
        "benchmark": "ack",
        "figures": figures,
        "ratios": {"ack_p99": round(figures["ack_p99_ms"] / figures["bare_p99_ms"], 3)},
    }
    if json_output:
        print(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.bench_ack")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = bench_ack(args.n, args.concurrency, args.json)
    if not args.json:
        for name, value in result["figures"].items():
            print(f"{name:>14}  {value}")
        print(f"{'ack_p99 ratio':>14}  {result['ratios']['ack_p99']}")


if __name__ == "__main__":
    main()
