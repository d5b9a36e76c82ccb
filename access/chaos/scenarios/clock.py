"""`clock`: the bot's wall clock jumps an hour forward, then an hour back (each jump is a
restart with `EICE_CLOCK_OFFSET_S`); no grant may be revoked early, none late.
"""

from __future__ import annotations

import random
import time

from access.chaos.harness import ChaosWorld
from access.chaos.scenarios.base import ChaosOptions, Outcome, Scenario, pump

JUMPS = (0.0, 3600.0, -3600.0, 0.0)
PHASE_S = 60.0
GRANT_S = "8s"


def run(world: ChaosWorld, opts: ChaosOptions, rng: random.Random) -> Outcome:
    budget = opts.lifecycles or 200
    phase = (opts.duration_s or PHASE_S * len(JUMPS)) / len(JUMPS)
    submitted = 0
    bot = None
    for offset in JUMPS:
        if bot is not None:
            world.crashed(bot)
            world.restarts += 1
        world.extra_env["EICE_CLOCK_OFFSET_S"] = str(offset)
        bot = world.spawn("bot")
        deadline = time.monotonic() + phase
        while time.monotonic() < deadline:
            submitted += pump(
                world, instance="dev-box", duration=GRANT_S, budget=budget - submitted, max_new=2
            )
            time.sleep(0.3)
    world.extra_env.pop("EICE_CLOCK_OFFSET_S", None)
    return Outcome(figures={"lifecycles": submitted, "clock_offsets_s": list(JUMPS)})


SCENARIO = Scenario("clock", run)
