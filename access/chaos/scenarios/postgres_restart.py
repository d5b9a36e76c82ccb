"""`postgres-restart`: PostgreSQL restarted (fast, then immediate, alternating) during the
lifecycles; no transition is lost and the bot needs no manual restart.
"""

from __future__ import annotations

import random
import time

from access.chaos.harness import ChaosWorld, now
from access.chaos.scenarios.base import ChaosOptions, Outcome, Scenario, pump


def run(world: ChaosWorld, opts: ChaosOptions, rng: random.Random) -> Outcome:
    lifecycles = opts.lifecycles or 300
    restarts = max(2, int((opts.duration_s or 120) // 20))
    cluster = world.cluster
    bot = world.spawn("bot")
    submitted, done_restarts = 0, 0
    next_restart = time.monotonic() + rng.uniform(3, 8)
    while submitted < lifecycles or done_restarts < restarts:
        try:
            submitted += pump(world, instance="web-1", duration="4s", budget=lifecycles - submitted, bot=bot)
        except Exception:
            time.sleep(0.5)  # the harness's own connection broke with the restart; so be it
        if done_restarts < restarts and time.monotonic() > next_restart:
            mode = "fast" if done_restarts % 2 == 0 else "immediate"
            down = now()
            cluster.restart(mode)
            world.impaired(down, now())
            done_restarts += 1
            next_restart = time.monotonic() + rng.uniform(3, 10)
        time.sleep(0.2)
    alive = bot.alive()
    while world.pending_requests() and bot.alive():  # the last approvals, through Slack
        pump(world, instance="web-1", duration="4s", budget=0, bot=bot)
        time.sleep(0.3)
    problems = [] if alive and bot.alive() else ["the bot process died and needed a restart"]
    return Outcome(
        extra={"no_manual_restart": problems},
        figures={"lifecycles": submitted, "postgres_restarts": list(cluster.restarts)},
    )


SCENARIO = Scenario("postgres-restart", run, database="postgres", private_postgres=True)
