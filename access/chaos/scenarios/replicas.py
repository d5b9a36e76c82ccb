"""`replicas`: three `eice serve` on one PostgreSQL; every 20 s one is SIGKILLed (and restarted)
or SIGSTOPped (and continued). Every grant is revoked, at most 3 delete calls per grant, and
never do two replicas hold live claims on the same grant.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

from access.chaos.harness import ChaosWorld
from access.chaos.invariants import Snapshot, delete_calls
from access.chaos.procs import BotProcess
from access.chaos.scenarios.base import ChaosOptions, Outcome, Scenario, pump

REPLICAS = 3
EVERY_S = 20.0
MAX_DELETES = 3


def run(world: ChaosWorld, opts: ChaosOptions, rng: random.Random) -> Outcome:
    lifecycles = opts.lifecycles or 1000
    duration = opts.duration_s or 15 * 60.0
    every = min(EVERY_S, max(2.0, duration / 6))
    world.observer.watch_claims = True
    bots: list[BotProcess] = [world.spawn(f"replica-{i}") for i in range(REPLICAS)]
    actions: Counter[str] = Counter()
    paused: tuple[int, float] | None = None
    submitted = 0
    end = time.monotonic() + duration
    next_fault = time.monotonic() + every
    # Spread the grants over the run: a new one about every duration/lifecycles seconds.
    pace = duration / lifecycles
    next_submit = time.monotonic()
    while time.monotonic() < end or submitted < lifecycles:
        if time.monotonic() >= next_submit and submitted < lifecycles:
            got = pump(world, instance="dev-box", duration="6s", budget=1, max_new=1)
            submitted += got
            next_submit += pace if got else 0.2
        if paused is not None and time.monotonic() > paused[1]:
            bots[paused[0]].signal(signal.SIGCONT)
            paused = None
        if time.monotonic() >= next_fault and time.monotonic() < end:
            victim = rng.randrange(REPLICAS)
            if paused is not None and paused[0] == victim:
                bots[victim].signal(signal.SIGCONT)
                paused = None
            if rng.random() < 0.5:
                world.crashed(bots[victim], impairs=False)
                world.restarts += 1
                bots[victim] = world.spawn(f"replica-{victim}")
                actions["SIGKILL"] += 1
            else:
                if paused is not None:
                    bots[paused[0]].signal(signal.SIGCONT)
                bots[victim].signal(signal.SIGSTOP)
                paused = (victim, time.monotonic() + rng.uniform(2.0, every * 0.8))
                actions["SIGSTOP"] += 1
            next_fault = time.monotonic() + every
        time.sleep(0.05)
    if paused is not None:
        bots[paused[0]].signal(signal.SIGCONT)
    return Outcome(
        figures={"lifecycles": submitted, "replicas": REPLICAS, "faults": dict(actions)},
    )


def after(snap: Snapshot) -> dict[str, list[str]]:
    """At most MAX_DELETES DeleteRolePolicy calls per grant; never two live claims at once."""
    return {
        "at_most_3_deletes_per_grant": [
            f"{name}: {n} delete calls" for name, n in delete_calls(snap).items() if n > MAX_DELETES
        ],
        "single_live_claim": list(snap.double_claims),
    }


SCENARIO = Scenario("replicas", run, users=lambda _opts: 24, database="postgres", after=after)
