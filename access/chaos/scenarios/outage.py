"""`outage`: the bot is down while N grants expire; on restart all are revoked within 120 s,
oldest first, before any new request is served.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime

from sqlalchemy import select

from access.access_requests.models import AccessRequest
from access.chaos.harness import ChaosWorld, now
from access.chaos.procs import BotProcess, spawn_bot, wait_healthy
from access.chaos.scenarios.base import ChaosOptions, Outcome, Scenario, until
from access.grants.models import Grant

CATCH_UP_LIMIT_S = 120.0
GRANT_S = 10


def run(world: ChaosWorld, opts: ChaosOptions, rng: random.Random) -> Outcome:
    n = opts.lifecycles or 500
    bot = world.spawn("bot")
    world.crashed(bot)  # down from here on
    dev = [i.instance_id for i in world.estate.instances if i.env == "dev"]
    made: list[str] = []
    for index in range(n):
        user = world.users[index // len(dev)]  # the last user is kept for the new request
        if world.submit(user, dev[index % len(dev)], f"{GRANT_S}s"):
            made.append(user)
    with world.rt.db.transaction() as s:
        last_expiry = max(s.scalars(select(Grant.expires_at)))
    until(lambda: now() > last_expiry, timeout=GRANT_S + 5 + (last_expiry - now()).total_seconds())
    time.sleep(rng.uniform(0.5, 2.0))
    # Restart, and ask for access on Slack the moment the port answers.
    restarted_at = now()
    env = world.bot_env("bot")
    new_bot = spawn_bot("bot", env, world.workdir)
    world.bots.append(new_bot)
    world.restarts += 1
    asked: list[datetime] = []
    asker = threading.Thread(target=_ask_when_up, args=(world, new_bot, asked), daemon=True)
    asker.start()
    healthy = wait_healthy(new_bot, timeout=CATCH_UP_LIMIT_S + 60)
    world.mark_up()
    asker.join(timeout=60)
    problems = _check(world, restarted_at, healthy, asked)
    figures: dict[str, object] = {"lifecycles": len(made), "restarts": world.restarts}
    with world.rt.db.transaction() as s:
        revoked = [r for r in s.scalars(select(Grant.revoked_at).where(Grant.expires_at < restarted_at)) if r]
    if revoked:
        figures["catch_up_s"] = round((max(revoked) - restarted_at).total_seconds(), 2)
    return Outcome(extra=problems, figures=figures)


def _ask_when_up(world: ChaosWorld, bot: BotProcess, asked: list[datetime]) -> None:
    """Send `/eice request` again and again until the restarted bot's port takes it."""
    driver = world.driver(bot)
    deadline = time.monotonic() + CATCH_UP_LIMIT_S + 60
    try:
        while time.monotonic() < deadline and bot.alive():
            try:
                driver.command(world.users[-1], "request web-1 2s outage")
                asked.append(now())
                return
            except Exception:
                time.sleep(0.05)
    finally:
        driver.close()


def _check(
    world: ChaosWorld, restarted_at: datetime, healthy: bool, asked: list[datetime]
) -> dict[str, list[str]]:
    def asked_row() -> datetime | None:
        with world.rt.db.transaction() as s:
            return s.scalars(
                select(AccessRequest.created_at).where(AccessRequest.requester_id == world.users[-1])
            ).first()

    until(lambda: asked_row() is not None, timeout=20)  # the listener answers after its ack
    new_request = asked_row()
    with world.rt.db.transaction() as s:
        grants = sorted(s.execute(select(Grant.expires_at, Grant.revoked_at, Grant.request_id)).all())
    outage = [(e, r) for e, r, _ in grants if e < restarted_at]
    within: list[str] = [] if healthy else ["the bot never became healthy"]
    late = [r for _, r in outage if r is None or (r - restarted_at).total_seconds() > CATCH_UP_LIMIT_S]
    if late:
        within.append(
            f"{len(late)} of {len(outage)} not revoked within {CATCH_UP_LIMIT_S:.0f}s of the restart"
        )
    order: list[str] = []
    tenth = max(1, len(outage) // 10)
    if len(outage) >= 10 and not late:
        oldest = max(r for _, r in outage[:tenth] if r is not None)
        newest = min(r for _, r in outage[-tenth:] if r is not None)
        if oldest > newest:
            order.append("a grant among the newest tenth was revoked before one among the oldest tenth")
    served: list[str] = []
    last = max((r for _, r in outage if r is not None), default=None)
    if new_request is None:
        served.append("the request sent on restart was never recorded")
    elif last is not None and new_request < last:
        served.append("a new request was served before the catch-up finished")
    # The new request gets approved so the run can finish.
    for request_id in world.pending_requests():
        world.approve_direct(request_id)
    return {"caught_up_within_120s": within, "oldest_first": order, "catch_up_before_new_requests": served}


SCENARIO = Scenario("outage", run, users=lambda opts: max(8, ((opts.lifecycles or 500) + 1) // 2 + 1))
