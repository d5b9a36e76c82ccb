"""Pure checks over what a chaos run left behind: grant rows, audit rows, IAM and call logs.

Nothing here talks to a process or a server; `Snapshot` is gathered by the harness, so a
test can build (or spoil) one by hand and see exactly which invariant turns false.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# Audit kinds that move a grant forward, with the lifecycle rank they put it at.
TRANSITION_RANK = {
    "grant.created": 0,
    "grant.applied": 1,
    "grant.reapplied": 1,
    "grant.extended": 1,
    "grant.drift": 1,
    "grant.revoke_requested": 2,
    "grant.failed": 2,
    "grant.revoked": 3,
    "grant.cleaned_up": 3,
    "grant.closed_by_admin": 3,
}
STATUS_RANK = {"applying": 0, "active": 1, "revoking": 2, "revoked": 3, "failed": 3}
FINAL = ("revoked", "failed")
LIVE = ("applying", "active", "revoking")
INVARIANTS = (
    "revoked_on_time",
    "iam_matches_grants",
    "one_grant_and_put_per_request",
    "no_backward_moves",
    "audit_complete",
    "audit_chain_verifies",
)


@dataclass(frozen=True)
class GrantRow:
    """The columns of a grant the checks need."""

    id: str
    request_id: str
    status: str
    principal_arn: str
    policy_name: str
    created_at: datetime
    expires_at: datetime
    applied_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None


@dataclass(frozen=True)
class AuditRow:
    seq: int
    kind: str
    grant_id: str | None
    at: datetime
    detail: dict[str, Any]


@dataclass(frozen=True)
class PolicyCall:
    """One Put/DeleteRolePolicy that reached IAM (from the sandbox's CloudTrail log)."""

    action: str  # "PutRolePolicy" | "DeleteRolePolicy" | ...
    policy_name: str
    ok: bool
    agent: str = ""
    at: datetime | None = None  # AWS's clock, whole seconds


@dataclass
class Snapshot:
    """Everything one check looks at, gathered after the final reconcile pass."""

    ended_at: datetime
    grants: list[GrantRow]
    approved_request_ids: set[str]
    audit: list[AuditRow]
    chain_ok: bool
    chain_problem: str | None
    iam_policies: dict[str, list[str]]  # principal -> eice-grant-* names in IAM now
    policy_calls: list[PolicyCall]
    iam_call_counts: dict[str, int]  # every IAM call the sandbox saw, incl. throttled ones
    impairments: list[tuple[datetime, datetime]] = field(default_factory=list)
    crashes: list[datetime] = field(default_factory=list)  # moments a bot process died
    backward_moves: list[str] = field(default_factory=list)  # seen by the live observer
    double_claims: list[str] = field(default_factory=list)
    reaper_interval_s: float = 0.5
    slack_s: float = 30.0
    excused_grants: set[str] = field(default_factory=set)  # e.g. closed by an admin on purpose


@dataclass
class Verdict:
    invariants: dict[str, bool]
    problems: dict[str, list[str]]
    figures: dict[str, Any]

    @property
    def ok(self) -> bool:
        return all(self.invariants.values())


def _overlap_s(start: datetime, end: datetime, windows: list[tuple[datetime, datetime]]) -> float:
    total = 0.0
    for w_start, w_end in windows:
        lo, hi = max(start, w_start), min(end, w_end)
        if hi > lo:
            total += (hi - lo).total_seconds()
    return total


def allowed_lag_s(snap: Snapshot, grant: GrantRow, until: datetime) -> float:
    """Downtime (and fault windows) overlapping the grant's overdue time + reaper interval + 30 s."""
    return _overlap_s(grant.expires_at, until, snap.impairments) + snap.reaper_interval_s + snap.slack_s


def _by_expiry(grant: GrantRow) -> bool:
    return grant.revoked_by is None and not (grant.revoke_reason or "").startswith(("apply failed", "closed"))


def removed_from_iam(snap: Snapshot) -> dict[str, datetime]:
    """When IAM (by its own clock) first deleted each policy: the moment access really ended."""
    first: dict[str, datetime] = {}
    for c in snap.policy_calls:
        if c.action == "DeleteRolePolicy" and c.ok and c.at is not None:
            first[c.policy_name] = min(c.at, first.get(c.policy_name, c.at))
    return first


def check_revoked_on_time(snap: Snapshot) -> list[str]:
    """Judged by IAM's clock when the log has the delete (a bot's clock may be wrong), else the row's."""
    problems = []
    removed = removed_from_iam(snap)
    for g in snap.grants:
        if g.id in snap.excused_grants:
            continue
        if g.status in FINAL and g.revoked_at is not None:
            if not _by_expiry(g):
                continue
            at = removed.get(g.policy_name, g.revoked_at)
            lag = (at - g.expires_at).total_seconds()
            if lag < -1.0:  # IAM's eventTime has whole seconds
                problems.append(f"{g.id} revoked {-lag:.1f}s before its expiry")
            elif g.expires_at <= snap.ended_at and lag > allowed_lag_s(snap, g, at) + 1.0:
                problems.append(f"{g.id} revoked {lag:.1f}s after expiry")
        elif g.expires_at <= snap.ended_at:
            lag = (snap.ended_at - g.expires_at).total_seconds()
            if lag > allowed_lag_s(snap, g, snap.ended_at):
                problems.append(f"{g.id} still {g.status} {lag:.1f}s after expiry")
    return problems


def check_iam_matches_grants(snap: Snapshot) -> list[str]:
    live = {g.policy_name for g in snap.grants if g.status in LIVE}
    active = {g.policy_name: g for g in snap.grants if g.status == "active"}
    problems = []
    present: set[str] = set()
    for principal, names in snap.iam_policies.items():
        for name in names:
            present.add(name)
            if name not in live:
                problems.append(f"orphan policy {name} on {principal}")
    for name, g in active.items():
        if name not in present:
            problems.append(f"active grant {g.id} has no policy in IAM")
    return problems


def successful_puts(snap: Snapshot) -> Counter[str]:
    return Counter(c.policy_name for c in snap.policy_calls if c.action == "PutRolePolicy" and c.ok)


def delete_calls(snap: Snapshot) -> Counter[str]:
    return Counter(c.policy_name for c in snap.policy_calls if c.action == "DeleteRolePolicy")


def check_one_grant_and_put(snap: Snapshot) -> list[str]:
    """One grant per approved request; one successful put per grant unless a crash came between."""
    problems = []
    per_request = Counter(g.request_id for g in snap.grants)
    for request_id in sorted(snap.approved_request_ids):
        if per_request[request_id] != 1:
            problems.append(f"request {request_id} has {per_request[request_id]} grants")
    puts = successful_puts(snap)
    for g in snap.grants:
        n = puts[g.policy_name]
        if g.applied_at is None:
            continue  # never applied: failed, or revoked before it was put
        end = g.applied_at + timedelta(seconds=1)
        crashes = sum(1 for c in snap.crashes if g.created_at <= c <= end)
        # A new document (extension) or a repair (drift) is put again, and says so in the audit.
        extensions = sum(
            1 for a in snap.audit if a.grant_id == g.id and a.kind in ("grant.extended", "grant.drift")
        )
        if n < 1 or n > 1 + crashes + extensions:
            problems.append(f"grant {g.id} has {n} successful PutRolePolicy ({crashes} crashes during apply)")
    return problems


def check_no_backward_moves(snap: Snapshot) -> list[str]:
    problems = list(snap.backward_moves)
    rank: dict[str, int] = {}
    for a in sorted(snap.audit, key=lambda r: r.seq):
        if a.grant_id is None or a.kind not in TRANSITION_RANK:
            continue
        r = TRANSITION_RANK[a.kind]
        if r < rank.get(a.grant_id, 0) and a.kind not in ("grant.reapplied", "grant.drift"):
            problems.append(f"grant {a.grant_id}: {a.kind} (seq {a.seq}) after a later state")
        rank[a.grant_id] = max(rank.get(a.grant_id, 0), r)
    for g in snap.grants:
        if STATUS_RANK[g.status] < rank.get(g.id, 0):
            problems.append(f"grant {g.id} is {g.status} but its audit trail went further")
    return problems


def check_audit_complete(snap: Snapshot) -> list[str]:
    kinds: dict[str, set[str]] = {}
    for a in snap.audit:
        if a.grant_id:
            kinds.setdefault(a.grant_id, set()).add(a.kind)
    problems = []
    for g in snap.grants:
        have = kinds.get(g.id, set())
        need = {"grant.created"}
        if g.applied_at is not None:
            need.add("grant.applied")
        if g.status == "revoked":
            need.add(
                "grant.closed_by_admin" if (g.revoke_reason or "").startswith("closed") else "grant.revoked"
            )
        if g.status == "failed":
            need |= {"grant.failed", "grant.cleaned_up"}
        if g.revoked_by and g.status in FINAL and not (g.revoke_reason or "").startswith("closed"):
            need.add("grant.revoke_requested")
        missing = need - have
        if missing:
            problems.append(f"grant {g.id} ({g.status}) lacks audit rows {sorted(missing)}")
    return problems


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def figures(snap: Snapshot) -> dict[str, Any]:
    """Lag percentiles, orphans, drift, IAM calls per grant."""
    lags = [
        (g.revoked_at - g.expires_at).total_seconds()
        for g in snap.grants
        if g.revoked_at is not None and g.status in FINAL and _by_expiry(g)
    ]
    removed = removed_from_iam(snap)
    iam_lags = [
        round((removed[g.policy_name] - g.expires_at).total_seconds(), 1)
        for g in snap.grants
        if g.policy_name in removed and g.status in FINAL and _by_expiry(g)
    ]
    kinds = Counter(a.kind for a in snap.audit)
    n = max(1, len(snap.grants))
    puts, deletes = successful_puts(snap), delete_calls(snap)
    iam_calls = sum(v for k, v in snap.iam_call_counts.items() if k.startswith("iam:") and "Policy" in k)
    overdue = Counter(a.grant_id for a in snap.audit if a.kind == "grant.overdue")
    return {
        "grants": len(snap.grants),
        "lag_p50_s": round(statistics.median(lags), 3) if lags else 0.0,
        "lag_p99_s": round(_percentile(lags, 0.99), 3),
        "lag_max_s": round(max(lags), 3) if lags else 0.0,
        "iam_lag_max_s": max(iam_lags, default=0.0),
        "orphans": kinds["policy.orphan_deleted"],
        "drift": kinds["grant.drift"],
        "overdue_alerts": sum(overdue.values()),
        "max_alerts_per_grant": max(overdue.values(), default=0),
        "iam_calls_per_grant": round(iam_calls / n, 2),
        "max_puts_per_grant": max(puts.values(), default=0),
        "max_deletes_per_grant": max(deletes.values(), default=0),
        "audit_rows": len(snap.audit),
    }


def check(snap: Snapshot, extra: dict[str, list[str]] | None = None) -> Verdict:
    """Every invariant of issue 8 (plus a scenario's own), with the figures of the run."""
    problems = {
        "revoked_on_time": check_revoked_on_time(snap),
        "iam_matches_grants": check_iam_matches_grants(snap),
        "one_grant_and_put_per_request": check_one_grant_and_put(snap),
        "no_backward_moves": check_no_backward_moves(snap),
        "audit_complete": check_audit_complete(snap),
        "audit_chain_verifies": [] if snap.chain_ok else [snap.chain_problem or "chain broken"],
        **(extra or {}),
    }
    return Verdict({k: not v for k, v in problems.items()}, problems, figures(snap))
