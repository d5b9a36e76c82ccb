"""`slack`: the Slack stand-in answers 429, errors, and times out after posting. Grants are
unaffected, every message is delivered within minutes, and no request gets two cards.
"""

from __future__ import annotations

import random
import time
from collections import Counter

from sqlalchemy import func, select

from access.chaos.harness import APPROVALS, ChaosWorld
from access.chaos.scenarios.base import ChaosOptions, Outcome, Scenario, pump, until
from access.outbox.models import OutboxMessage

METHODS = ("chat.postMessage", "chat.update", "conversations.open")
CONSISTENT_WITHIN_S = 180.0


def inject(world: ChaosWorld, rng: random.Random, counts: Counter[str]) -> None:
    """One fault on one Web API method: a 429, a 5xx, an error answer, or a lost response."""
    method = rng.choice(METHODS)
    kind = rng.choice(("429", "500", "error", "timeout"))
    times = rng.randint(1, 3)
    if kind == "429":
        world.slack.fail(method, status=429, retry_after=1, times=times)
    elif kind == "500":
        world.slack.fail(method, status=500, times=times)
    elif kind == "error":
        world.slack.fail(method, status=200, error="internal_error", times=times)
    else:  # the post happens, the answer never comes
        world.slack.fail(method, timeout_s=2.0, after_effect=True, times=1)
    counts[f"{method} {kind}"] += 1


def run(world: ChaosWorld, opts: ChaosOptions, rng: random.Random) -> Outcome:
    lifecycles = opts.lifecycles or 200
    bot = world.spawn("bot")
    faults: Counter[str] = Counter()
    submitted = 0
    next_fault = time.monotonic()
    while submitted < lifecycles or world.pending_requests():
        submitted += pump(
            world, instance="web-1", duration="4s", budget=lifecycles - submitted, bot=bot, max_new=3
        )
        if submitted < lifecycles and time.monotonic() >= next_fault:
            inject(world, rng, faults)
            next_fault = time.monotonic() + rng.uniform(0.2, 1.5)
        time.sleep(0.2)
    world.settle(timeout=120)
    delivered = until(lambda: _unsent(world) == 0, timeout=CONSISTENT_WITHIN_S, every=1.0)
    cards = Counter(
        m.blocks and _request_of(str(m.blocks))
        for m in world.slack.messages(APPROVALS)
        if m.thread_ts is None
    )
    with world.rt.db.transaction() as s:
        from access.access_requests.models import AccessRequest

        requests = list(s.scalars(select(AccessRequest.id)))
    duplicates = [f"{r}: {cards[r]} cards" for r in requests if cards[r] > 1]
    missing = [f"{r}: no card" for r in requests if cards[r] == 0]
    return Outcome(
        extra={
            "no_duplicate_cards": duplicates,
            "messages_consistent": ([] if delivered else [f"{_unsent(world)} messages not delivered"])
            + missing,
        },
        figures={"lifecycles": submitted, "slack_faults": sum(faults.values()), "fault_kinds": dict(faults)},
    )


def _unsent(world: ChaosWorld) -> int:
    with world.rt.db.transaction() as s:
        return int(
            s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None)))
            or 0
        )


def _request_of(blocks: str) -> str | None:
    import re

    found = re.search(r"r-[a-z0-9]{10}", blocks)
    return found.group(0) if found else None


SCENARIO = Scenario("slack", run)
