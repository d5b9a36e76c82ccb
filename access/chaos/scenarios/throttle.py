"""`throttle`: IAM answers 30% Throttling and 5% ServiceFailure, then 100% Throttling. Every
revocation still completes, retries stay bounded (no storm), and each grant overdue by more
than the allowed lag raises exactly one alert.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from access.audit.models import AuditEvent
from access.aws.calls import BOTO_CONFIG
from access.chaos.harness import ChaosWorld, now
from access.chaos.scenarios.base import ChaosOptions, Outcome, Scenario, pump
from access.grants.models import Grant

PARTIAL_S, FULL_S = 600.0, 180.0
BACKOFF_CAP_S = 60.0  # access.grants.flows.backoff_s never waits longer (x1.2 jitter)
WRAPPER_ATTEMPTS = 4  # access.aws.calls.with_retries
# One revoke attempt under throttling: 4 wrapper tries x 3 botocore tries, with their sleeps.
ATTEMPT_WORST_S = 20.0


def windows(opts: ChaosOptions) -> tuple[float, float]:
    """(partial, full) seconds: the issue's 10 + 3 minutes, or --duration split 10:3."""
    if opts.duration_s is None:
        return PARTIAL_S, FULL_S
    return opts.duration_s * 10 / 13, opts.duration_s * 3 / 13


def calls_per_attempt() -> int:
    """HTTP calls one revoke attempt may make: botocore's tries inside our wrapper's."""
    retries: dict[str, object] = getattr(BOTO_CONFIG, "retries", None) or {}
    return int(str(retries.get("max_attempts", 3))) * WRAPPER_ATTEMPTS


def attempts_within(seconds: float) -> int:
    """Revoke attempts the backoff (1, 2, 4 ... 60 s, jitter down to x0.8) allows in `seconds`."""
    t, attempts = 0.0, 1
    while True:
        wait = min(BACKOFF_CAP_S, 2.0 ** (attempts - 1)) * 0.8
        if t + wait > seconds:
            return attempts
        t += wait
        attempts += 1


def run(world: ChaosWorld, opts: ChaosOptions, rng: random.Random) -> Outcome:
    partial, full = windows(opts)
    budget = opts.lifecycles or 10_000
    world.spawn("bot")
    submitted = 0
    faults = world.aws.faults
    start = now()
    faults.update({"iam_throttle_rate": 0.3, "iam_error_rate": 0.05})
    deadline = time.monotonic() + partial
    while time.monotonic() < deadline:
        submitted += pump(world, instance="dev-box", duration="5s", budget=budget - submitted, max_new=2)
        time.sleep(0.5)
    faults.update({"iam_throttle_rate": 1.0, "iam_error_rate": 0.0})
    before_full = faults.counters.counts.get("iam:DeleteRolePolicy", 0)
    with world.rt.db.transaction() as s:
        at_risk = len(
            list(s.scalars(select(Grant.id).where(Grant.status.in_(("active", "revoking", "applying")))))
        )
    deadline = time.monotonic() + full
    while time.monotonic() < deadline:
        submitted += pump(
            world, instance="dev-box", duration="5s", budget=min(1, budget - submitted), max_new=1
        )
        time.sleep(1.0)
    in_full = faults.counters.counts.get("iam:DeleteRolePolicy", 0) - before_full
    faults.update({"iam_throttle_rate": 0.0, "iam_error_rate": 0.0})
    end = now()
    # A grant waiting out its backoff when the faults stop may wait one more cap.
    world.impaired(start, end + timedelta(seconds=BACKOFF_CAP_S * 1.2 + 5))
    world.settle(timeout=BACKOFF_CAP_S * 2 + 60)
    problems = _check(world, in_full, full, at_risk, submitted)
    return Outcome(
        extra=problems,
        figures={
            "lifecycles": submitted,
            "fault_windows_s": [round(partial, 1), round(full, 1)],
            "delete_calls_in_full_throttle": in_full,
            "grants_at_risk_in_full_throttle": at_risk,
        },
    )


def _check(
    world: ChaosWorld, in_full: int, full_s: float, at_risk: int, submitted: int
) -> dict[str, list[str]]:
    # Grants that lived through the 100% window plus any submitted during it; each may try
    # attempts_within(full_s) times, each attempt being up to calls_per_attempt() HTTP calls.
    allowed = (at_risk + submitted) * attempts_within(full_s) * calls_per_attempt()
    storm = [] if in_full <= allowed else [f"{in_full} delete calls in the full window (bound {allowed})"]
    with world.rt.db.transaction() as s:
        grants = list(s.scalars(select(Grant)))
        alerts = Counter(
            a.grant_id for a in s.scalars(select(AuditEvent).where(AuditEvent.kind == "grant.overdue"))
        )
    alert_problems = [f"{g} alerted {n} times" for g, n in alerts.items() if n > 1]
    # A grant that crosses the threshold in the middle of one (long, retried) attempt that then
    # succeeds is never seen unrevoked past it: only lags beyond one attempt must have alerted.
    threshold = world.overdue_after_s + ATTEMPT_WORST_S + world.rt.reaper_interval_s * 4
    for g in grants:
        lag = (g.revoked_at - g.expires_at).total_seconds() if g.revoked_at is not None else 0.0
        if lag > threshold and alerts[g.id] != 1:
            alert_problems.append(f"{g.id} was {lag:.0f}s late, {alerts[g.id]} alerts")
    unfinished = [g.id for g in grants if g.status not in ("revoked", "failed") and g.expires_at < now()]
    return {
        "bounded_retries": storm,
        "overdue_alerted_once": alert_problems,
        "every_revocation_completes": [f"{len(unfinished)} grants not revoked"] if unfinished else [],
    }


SCENARIO = Scenario(
    "throttle",
    run,
    users=lambda _opts: 24,
    claim_lease_s=30.0,  # longer than one IAM call with every retry under throttling
    overdue_after_s=lambda opts: (
        60.0 if opts.duration_s is None else max(2.0, math.floor(windows(opts)[1] / 2))
    ),
)
