"""What every scenario shares: its options, its outcome, and the traffic pump."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from access.chaos.harness import ChaosWorld
from access.chaos.invariants import Snapshot
from access.chaos.procs import BotProcess


@dataclass
class ChaosOptions:
    """Sizes and knobs; None means the scenario's default (the issue's size)."""

    lifecycles: int | None = None
    seed: int = 1
    database: str = "sqlite"
    duration_s: float | None = None
    restart_delay_s: float | None = None
    kills_per_point: int | None = None
    workdir: Path | None = None
    postgres_url: str | None = None


@dataclass
class Outcome:
    """What a scenario adds to the common invariants: its own checks, figures, excused grants."""

    extra: dict[str, list[str]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    excused: set[str] = field(default_factory=set)
    ended_at: datetime | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[ChaosWorld, ChaosOptions, random.Random], Outcome]
    users: Callable[[ChaosOptions], int] = lambda _opts: 24
    overdue_after_s: Callable[[ChaosOptions], float] = lambda _opts: 60.0
    database: str | None = None  # forced database kind, if the scenario needs one
    private_postgres: bool = False
    claim_lease_s: float = 8.0
    after: Callable[[Snapshot], dict[str, list[str]]] | None = None  # checks on the final snapshot


def pump(
    world: ChaosWorld,
    *,
    instance: str,
    duration: str,
    budget: int,
    bot: BotProcess | None = None,
    max_new: int = 6,
) -> int:
    """One step of traffic: new requests for free users (up to `budget`), then approve clicks.

    With `bot`, pending requests are approved by clicking their card (the bot does the
    approval); otherwise requests must be auto-approved. Returns how many were submitted.
    """
    world.progress()
    submitted = 0
    if budget > 0:
        busy = world.busy_users()
        for user in [u for u in world.users if u not in busy][: min(budget, max_new)]:
            if world.submit(user, instance, duration):
                submitted += 1
    if bot is not None and bot.alive() and not bot.stopped:
        for request_id in world.pending_requests()[:10]:
            world.click_approve(bot, request_id)
    return submitted


def until(check: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    """Poll `check` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()
