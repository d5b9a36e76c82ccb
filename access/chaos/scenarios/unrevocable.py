"""`unrevocable`: IAM refuses one role. That grant is flagged overdue with its error, retries go
on, the others are unaffected, and an admin closes it with a reason (`eice close-grant`).
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

from sqlalchemy import select

from access.audit.models import AuditEvent
from access.chaos.harness import ChaosWorld
from access.chaos.scenarios.base import ChaosOptions, Outcome, Scenario, until
from access.grants.models import Grant

GRANT_S = 4
OVERDUE_AFTER_S = 60.0


def run(world: ChaosWorld, opts: ChaosOptions, rng: random.Random) -> Outcome:
    n = opts.lifecycles or 20
    code = rng.choice(("AccessDenied", "UnmodifiableEntity"))
    world.spawn("bot")
    dev = [i.instance_id for i in world.estate.instances if i.env == "dev"]
    for index in range(n):
        world.submit(
            world.users[index % len(world.users)], dev[index // len(world.users) % len(dev)], f"{GRANT_S}s"
        )
    victim_user = world.users[(n - 1) % len(world.users)]  # asked last: surely not expired yet
    role = world.role_arns[victim_user].rsplit("/", 1)[1]
    world.aws.faults.update({"refused_roles": {role: code}})
    with world.rt.db.transaction() as s:
        victims = list(
            s.scalars(select(Grant.id).where(Grant.requester_id == victim_user, Grant.status == "active"))
        )
    problems: dict[str, list[str]] = {}

    def flagged() -> bool:
        with world.rt.db.transaction() as s:
            return all(
                g.overdue_at is not None for g in s.scalars(select(Grant).where(Grant.id.in_(victims)))
            )

    wait = GRANT_S + world.overdue_after_s + 30
    problems["flagged_overdue_with_error"] = (
        [] if until(flagged, wait) else ["the refused grant was never flagged"]
    )
    with world.rt.db.transaction() as s:
        alerts = list(s.scalars(select(AuditEvent).where(AuditEvent.kind == "grant.overdue")))
        others = list(s.scalars(select(Grant).where(Grant.requester_id != victim_user)))
    per_grant = Counter(a.grant_id for a in alerts)
    for grant_id in victims:
        errors = [a.detail.get("error", "") for a in alerts if a.grant_id == grant_id]
        if per_grant[grant_id] != 1 or not any(code in e for e in errors):
            problems["flagged_overdue_with_error"].append(f"{grant_id}: alerts {errors}")
    problems["others_unaffected"] = [
        f"{g.id} is {g.status}" for g in others if g.status != "revoked" or per_grant[g.id]
    ]
    retried = until(lambda: _attempts(world, victims) >= 2 * len(victims), timeout=30)
    problems["retries_continue"] = [] if retried else [f"only {_attempts(world, victims)} delete attempts"]
    problems["admin_close"] = _close(world, victims)
    # The role is fixed (or deleted) later: the leftover policy is the reconciler's to remove.
    world.aws.faults.update({"refused_roles": {}})
    return Outcome(
        extra=problems,
        figures={"lifecycles": n, "refusal": code, "delete_attempts_on_refused": _attempts(world, victims)},
        excused=set(victims),
    )


def _attempts(world: ChaosWorld, grant_ids: list[str]) -> int:
    with world.rt.db.transaction() as s:
        names = set(s.scalars(select(Grant.policy_name).where(Grant.id.in_(grant_ids))))
    return sum(
        1
        for r in world.aws.events.all()
        if r.get("eventName") == "DeleteRolePolicy"
        and (r.get("requestParameters") or {}).get("policyName") in names
    )


def _eice(world: ChaosWorld, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "access.cli.main", *args],
        env=world.bot_env("admin"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _close(world: ChaosWorld, victims: list[str]) -> list[str]:
    problems = []
    for grant_id in victims:
        refused = _eice(world, "close-grant", grant_id, "--admin", "U0C001", "--reason", "role is protected")
        blank = _eice(world, "close-grant", grant_id, "--admin", "U0ADMIN", "--reason", " ")
        with world.rt.db.transaction() as s:
            still = s.get(Grant, grant_id)
            status_before = still.status if still else None
        if refused.returncode == 0 or blank.returncode == 0 or status_before != "revoking":
            problems.append(f"{grant_id}: a non-admin or blank reason was accepted ({status_before})")
        done = _eice(
            world,
            "close-grant",
            grant_id,
            "--admin",
            "U0ADMIN",
            "--reason",
            "role is protected; removed by hand",
        )
        with world.rt.db.transaction() as s:
            grant = s.get(Grant, grant_id)
            closed = s.scalars(
                select(AuditEvent).where(
                    AuditEvent.grant_id == grant_id, AuditEvent.kind == "grant.closed_by_admin"
                )
            ).all()
        if done.returncode != 0 or grant is None or grant.status != "revoked" or len(closed) != 1:
            problems.append(f"{grant_id}: close-grant failed: {done.stderr.strip()[-300:]}")
    return problems


SCENARIO = Scenario(
    "unrevocable",
    run,
    users=lambda opts: max(4, min(24, opts.lifecycles or 20)),
    overdue_after_s=lambda opts: opts.duration_s or OVERDUE_AFTER_S,
)
