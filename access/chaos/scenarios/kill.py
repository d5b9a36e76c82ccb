"""`kill`: SIGKILL at random moments and at every named failpoint; restart after 0-30 s."""

from __future__ import annotations

import random
import time
from collections import Counter

from access.chaos.harness import ChaosWorld
from access.chaos.procs import BotProcess
from access.chaos.scenarios.base import ChaosOptions, Outcome, Scenario, pump

FAILPOINTS = (
    "after_approve_commit",
    "after_claim_before_put",
    "after_put_before_commit",
    "after_delete_before_commit",
    "after_commit_before_slack_update",
)
ARMED_TIMEOUT_S = 60.0  # an armed failpoint not reached by then is killed by hand (and reported)


def run(world: ChaosWorld, opts: ChaosOptions, rng: random.Random) -> Outcome:
    lifecycles = opts.lifecycles or 1000
    per_point = opts.kills_per_point if opts.kills_per_point is not None else 20
    max_delay = opts.restart_delay_s if opts.restart_delay_s is not None else 30.0
    schedule: list[str | None] = [p for p in FAILPOINTS for _ in range(per_point)] + [None] * per_point
    rng.shuffle(schedule)
    hits: Counter[str] = Counter()
    submitted = 0
    started = time.monotonic()

    def incarnation(point: str | None) -> tuple[BotProcess, float]:
        # With several kills per point, vary the moment: die at its 1st, 2nd or 3rd hit.
        spec = f"{point}:{rng.randint(1, 3) if per_point >= 3 else 1}" if point else None
        bot = world.spawn("bot", failpoint=spec)
        life = ARMED_TIMEOUT_S if point else rng.uniform(1.0, 8.0)
        return bot, time.monotonic() + life

    index = 0
    bot, kill_at = incarnation(schedule[0] if schedule else None)
    while index < len(schedule) or submitted < lifecycles:
        # Past the asked number, a trickle of traffic keeps the armed failpoints reachable.
        budget = lifecycles - submitted if submitted < lifecycles else (1 if index < len(schedule) else 0)
        submitted += pump(
            world,
            instance="web-1",
            duration="3s",
            budget=budget,
            bot=bot,
            max_new=6 if submitted < lifecycles else 1,
        )
        armed = schedule[index] if index < len(schedule) else "none"
        if index < len(schedule) and (not bot.alive() or time.monotonic() > kill_at):
            if bot.alive():
                world.crashed(bot)
                hits["random" if armed is None else f"unreached:{armed}"] += 1
            else:
                world.crashed(bot, kill=False)
                hits[bot.failpoint_hit() or "exited"] += 1
            index += 1
            time.sleep(rng.uniform(0.0, max_delay))
            world.restarts += 1
            bot, kill_at = incarnation(schedule[index] if index < len(schedule) else None)
        time.sleep(0.1)
    # Faults over: a clean bot finishes every lifecycle.
    while world.pending_requests() or world.unsettled():
        pump(world, instance="web-1", duration="3s", budget=0, bot=bot)
        if not bot.alive():
            world.crashed(bot, kill=False)
            bot, _ = incarnation(None)
        time.sleep(0.3)
        if time.monotonic() - started > 3600 * 3:
            break
    missing = [p for p in FAILPOINTS if hits[p] < per_point]
    return Outcome(
        extra={"every_failpoint_hit": [f"{p}: {hits[p]} of {per_point}" for p in missing]},
        figures={
            "lifecycles": submitted,
            "kills": dict(hits),
            "restarts": world.restarts,
        },
    )


# IAM is healthy here, so a short lease (a dead process's claims lapse soon) is safe.
SCENARIO = Scenario("kill", run, users=lambda opts: 24, claim_lease_s=4.0)
