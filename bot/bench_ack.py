"""`bench ack`: ack latency of `eice serve --http` against a Bolt app that only acks.

Both run as real subprocesses on the same waitress stack, against the local AWS and Slack
sandboxes. Commands arrive open-loop, the way Slack sends them: a seeded Poisson schedule at
a fixed mean rate (the same schedule for both servers), with at most `concurrency` in
flight. Each latency is counted from the command's scheduled arrival, so a server that
falls behind pays for the queue it builds. The signed requests are sent from a separate
firing process, so the sandboxes' own work (which shares this process) cannot slow the
stopwatch.

Every bot command is a real `/eice request` from a distinct user, so each one goes through
the whole path after its ack (AWS lookups, pre-flight, database writes, the approval card);
the run waits for all of them to finish before it measures the baseline, and fails if any
did not.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from access.errors import InvalidInput
from sandbox.slack.driver import DriverResponse, SlackDriver

SECRET = "bench-signing-secret"
INSTANCE = "web-1"
DRAIN_TIMEOUT_S = 300.0
SEED = 20261128


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
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


def arrivals(n: int, rate: float, seed: int = SEED) -> list[float]:
    """Offsets in seconds of `n` Poisson arrivals at a mean of `rate` per second."""
    rng = random.Random(seed)
    at, out = 0.0, []
    for _ in range(n):
        out.append(at)
        at += rng.expovariate(rate)
    return out


def fire(url: str, bodies: list[str], schedule: list[float], concurrency: int) -> list[float]:
    """POST each signed body at its scheduled offset; ack latencies in ms from the schedule."""
    start = time.perf_counter() + 0.2

    def one(i: int) -> float:
        due = start + schedule[i]
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        body = bodies[i].encode()
        ts = str(int(time.time()))
        digest = hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
            "Connection": "close",  # like Slack: a fresh connection per command
        }
        with requests.Session() as session:
            answer = session.post(url, data=body, headers=headers, timeout=30)
        elapsed_ms = (time.perf_counter() - due) * 1000
        if answer.status_code != 200:
            raise RuntimeError(f"ack failed: {answer.status_code} {answer.text[:200]}")
        return elapsed_ms

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, range(len(bodies))))


def _fire_in_subprocess(url: str, bodies: list[str], schedule: list[float], concurrency: int) -> list[float]:
    job = {"url": url, "bodies": bodies, "schedule": schedule, "concurrency": concurrency}
    done = subprocess.run(
        [sys.executable, "-m", "bot.bench_ack", "--fire"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the firing process failed: {done.stderr[-2000:]}")
    return [float(v) for v in json.loads(done.stdout)]


def _split(n: int, parts: int) -> list[int]:
    """`n` as `parts` near-equal positive sizes (fewer parts when n is small)."""
    parts = min(parts, n)
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _lower_sandbox_threads(nice: int, idle: bool) -> None:
    """Lower the priority of every thread here but the main one: the stand-ins' servers.

    Linux keeps a nice value and a scheduling policy per thread and a new thread inherits its
    creator's, so the servers' request threads follow; the firing processes, started from the
    main thread, keep the normal priority, as do the two servers under test. `idle` is
    SCHED_IDLE: the stand-ins then run only on CPU time the servers do not want, as AWS and
    Slack, on other machines, take none of theirs.
    """
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and thread.native_id is not None:
            if nice:
                os.setpriority(os.PRIO_PROCESS, thread.native_id, nice)
            if idle:
                os.sched_setscheduler(thread.native_id, os.SCHED_IDLE, os.sched_param(0))


def _users(count: int) -> list[dict[str, str]]:
    return [
        {"id": f"U0BENCH{i:05d}", "name": f"bench{i}", "email": f"bench{i}@example.com"} for i in range(count)
    ]


class _Recorder(SlackDriver):
    """Builds exactly the bodies `SlackDriver.command` would send, without sending them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bodies: list[str] = []

    def _post_form(self, body: bytes) -> DriverResponse:
        self.bodies.append(body.decode())
        return DriverResponse(status=0, body="", json=None, elapsed_ms=0.0, headers={})


@contextmanager
def _server(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run `python -m <args> --port N` until the block ends; its output goes to `log_path`."""
    port = _port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *args, "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_healthy(url, process)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {log_path.read_text(errors='replace')[-2000:]}") from exc
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def bench_ack(
    n: int = 1000,
    concurrency: int = 8,
    json_output: bool = False,
    *,
    rate: float = 10.0,
    rounds: int = 10,
    sandbox_nice: int = 0,
    sandbox_idle: bool = True,
) -> dict[str, Any]:
    """Run the benchmark; returns `{"benchmark": "ack", "figures": {...}, "ratios": {...}}`.

    Args:
        n: signed `/eice request` commands sent to each server (after a warm-up). The p99 of
            n latencies rests on its n/100 slowest: 1,000 makes that ten, not three.
        concurrency: most commands in flight at once (the firing process's connections).
        json_output: print the result as one JSON line too.
        rate: mean arrival rate, commands per second (Poisson, same schedule for both).
        rounds: alternating bot/bare rounds the `n` commands are split into.
        sandbox_nice: lower the AWS and Slack stand-ins' priority by this much (default 0:
            they compete with the servers for the CPU as equals, which real AWS and Slack,
            on other machines, do not). Stated in the figures.
        sandbox_idle: run the stand-ins under SCHED_IDLE (default): they get only the CPU
            time the servers and the firing process leave, so the CPU the bot's commands
            cost AWS and Slack (which the bare app never asks of them) does not land on the
            bot's own acks. False: they compete as equals. Stated in the figures.
    """
    if n < 1 or concurrency < 1 or rounds < 1 or not rate > 0:
        raise InvalidInput("--n, --concurrency and --rounds must be at least 1, and --rate above 0")
    if not 0 <= sandbox_nice <= 19:
        raise InvalidInput("--sandbox-nice must be between 0 and 19")
    from access.migrate import upgrade
    from sandbox.aws.seed import seed_estate
    from sandbox.aws.server import AwsSandbox
    from sandbox.bot_env import bot_env
    from sandbox.slack.server import DEFAULT_USERS, SlackSandbox

    warm = max(10, n // 10)
    users = _users(2 * (warm + n))  # one per command: every request is new
    with (
        AwsSandbox() as aws,
        SlackSandbox(users=[*DEFAULT_USERS, *users]) as slack,
        tempfile.TemporaryDirectory(prefix="eice-bench-") as tmp,
    ):
        estate = seed_estate(aws)
        roles = list(estate.role_arns.values())
        config = Path(tmp) / "eice.toml"
        principals = "\n".join(f'{u["id"]} = "{roles[i % len(roles)]}"' for i, u in enumerate(users))
        config.write_text(
            '[defaults]\napprovers = ["U0BOB", "S0ONCALL"]\napprovals_channel = "C0APPROVALS"\n'
            f"\n[principals]\n{principals}\n"
        )
        db_url = f"sqlite:///{tmp}/bench.sqlite"
        upgrade(db_url)
        env = bot_env(aws, slack, db_url=db_url, config=config, signing_secret=SECRET, EICE_LOG_LEVEL="ERROR")
        next_user = iter(users)

        recorder = _Recorder(bot_url="", signing_secret=SECRET, slack=slack)

        def commands(count: int) -> list[str]:
            recorder.bodies.clear()
            for i in range(count):
                recorder.command(next(next_user)["id"], f"request {INSTANCE} 30m bench {i}")
            return list(recorder.bodies)

        def answered() -> int:
            """Commands fully handled: the requester told, and the approval card posted."""
            replies = sum(1 for c in slack.calls_to("response_url") if c.status == 200)
            cards = sum(
                1
                for c in slack.calls_to("chat.postMessage")
                if c.status == 200 and c.params.get("channel") == "C0APPROVALS"
            )
            return min(replies, cards)

        def settle(expected: int) -> None:
            """Wait until the bot has handled `expected` commands in all (its work is done)."""
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while answered() < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            if answered() < expected:
                raise RuntimeError(f"the bot answered {answered()} of {expected} commands")

        ack: list[float] = []
        baseline: list[float] = []
        with (
            _server(["access.cli.main", "serve", "--http"], env, Path(tmp) / "bot.log") as bot_url,
            _server(["bot.bare_app"], env, Path(tmp) / "bare.log") as bare_url,
        ):
            targets = {"bot": bot_url + "/slack/events", "bare": bare_url + "/slack/events"}
            if sandbox_nice or sandbox_idle:
                _lower_sandbox_threads(sandbox_nice, sandbox_idle)
            for name in targets:  # warm-up, not measured
                _fire_in_subprocess(targets[name], commands(warm), arrivals(warm, rate, SEED), concurrency)
            sent = warm
            settle(sent)
            # Rounds alternate (bot, bare), (bare, bot), ... so that load from outside this
            # run falls on both alike; the bot's work is finished before the baseline runs.
            for r, size in enumerate(_split(n, rounds)):
                schedule = arrivals(size, rate, SEED + 1 + r)
                for name in ("bot", "bare") if r % 2 == 0 else ("bare", "bot"):
                    latencies = _fire_in_subprocess(targets[name], commands(size), schedule, concurrency)
                    if name == "bot":
                        ack += latencies
                        sent += size
                        settle(sent)
                    else:
                        baseline += latencies
        cards = len(slack.messages("C0APPROVALS"))
    figures: dict[str, float | int] = {
        "ack_p50_ms": round(statistics.median(ack), 3),
        "ack_p99_ms": round(_percentile(ack, 0.99), 3),
        "bare_p50_ms": round(statistics.median(baseline), 3),
        "bare_p99_ms": round(_percentile(baseline, 0.99), 3),
        "rate_per_s": rate,
        "concurrency": concurrency,
        "commands": n,
        "rounds": rounds,
        "sandbox_nice": sandbox_nice,
        "sandbox_idle": sandbox_idle,
        "approval_cards": cards,
    }
    result = {
        "benchmark": "ack",
        "figures": figures,
        "ratios": {
            "ack_p50": round(figures["ack_p50_ms"] / figures["bare_p50_ms"], 3),
            "ack_p99": round(figures["ack_p99_ms"] / figures["bare_p99_ms"], 3),
        },
    }
    if json_output:
        print(json.dumps(result))
    return result


def _fire_main() -> None:
    job = json.load(sys.stdin)
    latencies = fire(job["url"], job["bodies"], job["schedule"], int(job["concurrency"]))
    print(json.dumps(latencies))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.bench_ack")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=10.0, help="commands per second (Poisson)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating bot/bare rounds")
    parser.add_argument("--sandbox-nice", type=int, default=0, help="lower the stand-ins' priority")
    parser.add_argument(
        "--sandbox-priority", choices=("idle", "normal"), default="idle", help="the stand-ins' CPU priority"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fire", action="store_true", help=argparse.SUPPRESS)  # the firing process
    args = parser.parse_args()
    if args.fire:
        _fire_main()
        return
    result = bench_ack(
        args.n,
        args.concurrency,
        args.json,
        rate=args.rate,
        rounds=args.rounds,
        sandbox_nice=args.sandbox_nice,
        sandbox_idle=args.sandbox_priority == "idle",
    )
    if not args.json:
        for name, value in result["figures"].items():
            print(f"{name:>14}  {value}")
        for name, value in result["ratios"].items():
            print(f"{name + ' ratio':>14}  {value}")


if __name__ == "__main__":
    main()
