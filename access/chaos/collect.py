"""What the harness watches during a run (the grants table, for backward moves and double
claims) and gathers at its end (the snapshot the invariants are checked on).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, select

from access.access_requests.models import AccessRequest, RequestStatus
from access.audit.models import AuditEvent
from access.audit.service import verify_chain
from access.chaos.invariants import STATUS_RANK, AuditRow, GrantRow, PolicyCall, Snapshot
from access.grants.models import Grant
from access.grants.policy import is_own_policy_name
from sandbox.aws.events import parse_event_time

if TYPE_CHECKING:
    from access.chaos.harness import ChaosWorld


def now() -> datetime:
    return datetime.now(UTC)


class Observer:
    """Polls the grants table: a status that moves back, or a claim taken over while still live."""

    def __init__(self, db_url: str, *, watch_claims: bool = False) -> None:
        self.db_url = db_url
        self.watch_claims = watch_claims
        self.backward_moves: list[str] = []
        self.double_claims: list[str] = []
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, every_s: float = 0.2) -> None:
        self._running.set()
        self._thread = threading.Thread(
            target=self._observe, args=(every_s,), name="chaos-observer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _observe(self, every_s: float) -> None:
        rank: dict[str, int] = {}
        claims: dict[str, tuple[str, datetime]] = {}
        engine = create_engine(self.db_url)
        try:
            while self._running.is_set():
                try:
                    with engine.connect() as conn:
                        rows = conn.execute(
                            select(Grant.id, Grant.status, Grant.claimed_by, Grant.claim_expires_at)
                        ).all()
                except Exception:
                    time.sleep(every_s)  # the database may be restarting on purpose
                    continue
                seen = now()
                for grant_id, status, claimed_by, lease in rows:
                    r = STATUS_RANK[status]
                    if r < rank.get(grant_id, -1):
                        self.backward_moves.append(f"grant {grant_id} went back to {status}")
                    rank[grant_id] = max(r, rank.get(grant_id, -1))
                    if self.watch_claims:
                        self._check_claim(grant_id, claimed_by, lease, seen, claims)
                time.sleep(every_s)
        finally:
            engine.dispose()

    def _check_claim(
        self,
        grant_id: str,
        claimed_by: str | None,
        lease: Any,
        seen: datetime,
        claims: dict[str, tuple[str, datetime]],
    ) -> None:
        before = claims.get(grant_id)
        if claimed_by is None:
            claims.pop(grant_id, None)
            return
        if isinstance(lease, str):
            lease = datetime.fromisoformat(lease)
        if lease is not None and lease.tzinfo is None:
            lease = lease.replace(tzinfo=UTC)
        if before is not None and before[0] != claimed_by and before[1] > seen:
            owner = before[0].split(":")[0]
            if owner != claimed_by.split(":")[0]:
                self.double_claims.append(
                    f"grant {grant_id}: {claimed_by} claimed it while {before[0]} held it"
                )
        if lease is not None:
            claims[grant_id] = (claimed_by, lease)


def snapshot(
    world: ChaosWorld, *, ended_at: datetime | None = None, excused: set[str] | None = None
) -> Snapshot:
    """Rows, audit, chain, IAM and the call log as they are now."""
    rt = world.rt
    with rt.db.transaction() as s:
        grants = [
            GrantRow(
                g.id,
                g.request_id,
                g.status,
                g.principal_arn,
                g.policy_name,
                g.created_at,
                g.expires_at,
                g.applied_at,
                g.revoked_at,
                g.revoked_by,
                g.revoke_reason,
            )
            for g in s.scalars(select(Grant))
        ]
        approved = set(
            s.scalars(select(AccessRequest.id).where(AccessRequest.status == RequestStatus.APPROVED))
        )
        audit = [
            AuditRow(a.seq, a.kind, a.grant_id, a.at, dict(a.detail or {}))
            for a in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))
        ]
        chain = verify_chain(s)
    principals = sorted(
        {*world.role_arns.values(), *world.estate.role_arns.values(), *(g.principal_arn for g in grants)}
    )
    deployment = rt.config.aws.deployment
    iam_policies = {p: rt.iam.list_grant_names(p, deployment) for p in principals}
    calls = []
    for record in world.aws.events.all():
        params = record.get("requestParameters") or {}
        name = str(params.get("policyName", ""))
        if "Policy" in str(record.get("eventName")) and is_own_policy_name(name, deployment):
            calls.append(
                PolicyCall(
                    record["eventName"],
                    name,
                    not record.get("errorCode"),
                    str(record.get("userAgent", "")),
                    parse_event_time(record["eventTime"]),
                )
            )
    observer = world.observer
    return Snapshot(
        ended_at=ended_at or now(),
        grants=grants,
        approved_request_ids=approved,
        audit=audit,
        chain_ok=chain.ok,
        chain_problem=None if chain.ok else chain.problem,
        iam_policies=iam_policies,
        policy_calls=calls,
        iam_call_counts=dict(world.aws.faults.counters.counts),
        impairments=list(world.impairments),
        crashes=list(world.crashes),
        backward_moves=list(observer.backward_moves),
        double_claims=list(observer.double_claims),
        reaper_interval_s=rt.reaper_interval_s,
        excused_grants=excused or set(),
    )
