"""Signed `/eice request` commands fired at the bot, timed from send to ack."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from access.bench.world import Sandboxes

STORM_USERS = ("U0ALICE", "U0CAROL")


def fire(world: Sandboxes, bot_url: str, count: int, *, concurrency: int = 4) -> list[float]:
    """Send `count` commands, `concurrency` at a time; returns each ack's latency in ms."""

    def one(i: int) -> float:
        driver = world.driver(bot_url)
        try:
            answer = driver.command(
                STORM_USERS[i % len(STORM_USERS)], f"request {world.target} 30m bench {i}"
            )
            if answer.status != 200:
                raise RuntimeError(f"ack failed: {answer.status} {answer.body[:200]}")
            return answer.elapsed_ms
        finally:
            driver.close()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, range(count)))


class AckProbe:
    """Fires commands at a steady rate in a background thread until stopped."""

    def __init__(self, world: Sandboxes, bot_url: str, *, rate_per_s: float = 5.0) -> None:
        self.world = world
        self.bot_url = bot_url
        self.interval_s = 1.0 / rate_per_s
        self.latencies_ms: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-acks", daemon=True)

    def start(self) -> AckProbe:
        self._thread.start()
        return self

    def stop(self) -> list[float]:
        """Stop firing; returns the latencies seen."""
        self._stop.set()
        self._thread.join(timeout=30)
        return list(self.latencies_ms)

    def _run(self) -> None:
        driver = self.world.driver(self.bot_url)
        i = 0
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    answer = driver.command(
                        STORM_USERS[i % len(STORM_USERS)], f"request {self.world.target} 30m storm {i}"
                    )
                    if answer.status == 200:
                        self.latencies_ms.append(answer.elapsed_ms)
                    else:
                        self.failures += 1
                except Exception:
                    self.failures += 1
                i += 1
                self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            driver.close()
