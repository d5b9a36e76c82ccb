"""`bench catch-up`: grants expire while the bot is down; how long until start-up has revoked them all.

The bot runs once and is stopped; N active grants are seeded to expire within a short
window; once every one is overdue the bot is started again, and from the moment the
process is spawned a signed `/eice request` is fired (again and again until the bot
answers). Start-up must revoke every overdue grant before it takes that request.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import func, select

from access.bench.seed import seed_grants, spread
from access.bench.world import BotProcess, Sandboxes, sandboxes, scratch_database
from access.db import Database
from access.grants.models import Grant, GrantStatus

DONE = (GrantStatus.REVOKED, GrantStatus.FAILED)


class FirstAck:
    """Fires a signed command at a bot that may not be listening yet; notes when one is acked."""

    def __init__(self, world: Sandboxes, bot_url: str) -> None:
        self.world = world
        self.bot_url = bot_url
        self.acked_at: float | None = None
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-first-ack", daemon=True)

    def start(self) -> FirstAck:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        driver = self.world.driver(self.bot_url)
        try:
            while not self._stop.is_set():
                try:
                    answer = driver.command("U0ALICE", f"request {self.world.target} 30m after the outage")
                except requests.ConnectionError:
                    self.refused += 1
                    self._stop.wait(0.02)
                    continue
                if answer.status == 200:
                    self.acked_at = time.time()
                    return
                self._stop.wait(0.05)
        finally:
            driver.close()


def _last_revoked(db: Database) -> tuple[int, datetime | None]:
    with db.transaction() as session:
        row = session.execute(
            select(func.count(), func.max(Grant.revoked_at)).where(Grant.status.in_(DONE))
        ).one()
    return int(row[0]), row[1]


def bench_catch_up(
    overdue: int = 1000, window_s: float = 10.0, *, timeout_s: float = 600.0
) -> dict[str, Any]:
    """Run the outage and the start-up; returns `{"benchmark": "catch-up", "figures": {...}}`.

    Args:
        overdue: grants that expire while the bot is down.
        window_s: their expiries are spread over this many seconds after seeding.
        timeout_s: give up waiting for the revocations after this long.
    """
    with sandboxes() as world, scratch_database("sqlite", world.folder) as url:
        db = Database(url)
        first = BotProcess(world, url)
        try:
            first.wait_healthy()
        finally:
            first.stop()
        expiries = spread(overdue, datetime.now(UTC) + timedelta(seconds=2), window_s)
        seed_grants(
            world.aws,
            world.estate,
            db,
            expiries,
            role_prefix=f"catchup-{uuid.uuid4().hex[:6]}",
            slack=world.slack,
        )
        time.sleep(max(0.0, (expiries[-1] - datetime.now(UTC)).total_seconds()) + 0.5)
        with db.transaction() as session:
            due = session.scalar(
                select(func.count()).where(
                    Grant.status == GrantStatus.ACTIVE, Grant.expires_at <= datetime.now(UTC)
                )
            )
        world.aws.faults.reset_counters()
        bot = BotProcess(world, url)
        probe = FirstAck(world, bot.url).start()
        try:
            deadline = time.monotonic() + timeout_s
            revoked, last = _last_revoked(db)
            while revoked < overdue and time.monotonic() < deadline:
                time.sleep(0.2)
                revoked, last = _last_revoked(db)
            while probe.acked_at is None and time.monotonic() < deadline and bot.process.poll() is None:
                time.sleep(0.05)
        finally:
            probe.stop()
            bot.stop()
            db.dispose()
        deletes = world.aws.faults.counters.snapshot()["counts"].get("iam:DeleteRolePolicy", 0)
    last_s = last.timestamp() if last is not None else None
    figures: dict[str, Any] = {
        "overdue": int(due or 0),
        "revoked": revoked,
        "catch_up_s": round(last_s - bot.spawned_at, 3) if last_s is not None else None,
        "first_ack_after_s": round(probe.acked_at - bot.spawned_at, 3) if probe.acked_at else None,
        "first_ack_after_last_revoke": int(
            probe.acked_at is not None and last_s is not None and probe.acked_at >= last_s
        ),
        "refused_before_ack": probe.refused,
        "iam_calls_per_grant": round(deletes / overdue, 3),
    }
    return {"benchmark": "catch-up", "figures": figures, "ratios": {}}
