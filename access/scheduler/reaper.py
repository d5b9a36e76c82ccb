"""The reaper: finishes whatever is due, whoever started it and whether or not they crashed.

Due work: grants past `expires_at`, grants stuck in `applying`/`revoking` whose claim
lapsed, extended grants whose new document is not in IAM yet, and pending requests
past their approval deadline. Claims are atomic, so replicas split the work.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from access.access_requests.flows import expire_timed_out
from access.grants import service
from access.grants.flows import apply_grant, flag_overdue, revoke_grant
from access.grants.models import Grant, GrantStatus
from access.outbox.service import enqueue
from access.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class ReapReport:
    expired_requests: int = 0
    revoked: int = 0
    applied: int = 0
    still_pending: int = 0
    overdue_flagged: int = 0
    reminders: int = 0
    statuses: dict[str, str] = field(default_factory=dict)

    @property
    def work_done(self) -> int:
        return self.expired_requests + self.revoked + self.applied + self.still_pending


def _finish(rt: Runtime, grant: Grant) -> str:
    if grant.status == GrantStatus.REVOKING:
        return revoke_grant(rt, grant.id)
    return apply_grant(rt, grant.id)


def reap(
    rt: Runtime, *, batch: int = 200, max_rounds: int = 1000, pool: ThreadPoolExecutor | None = None
) -> ReapReport:
    """Run until nothing is due (or `max_rounds` batches), returning what was done."""
    report = ReapReport()
    with rt.db.transaction() as session:
        report.expired_requests = len(expire_timed_out(session, rt))
    own_pool = pool is None
    executor = pool or ThreadPoolExecutor(max_workers=rt.revoke_workers, thread_name_prefix="eice-reaper")
    try:
        for _ in range(max_rounds):
            now = rt.clock.now()
            with rt.db.transaction() as session:
                claimed = service.claim_due(
                    session, worker=rt.worker_id, now=now, lease_s=rt.claim_lease_s, limit=batch
                )
                # Detach plain copies for the workers: no session crosses threads.
                work = [(g.id, g.status) for g in claimed]
                stubs = {g.id: g for g in claimed}
            if not work:
                break
            results = list(executor.map(lambda item, s=stubs: (item[0], _safe_finish(rt, s[item[0]])), work))
            for grant_id, status in results:
                report.statuses[grant_id] = status
                if status in (GrantStatus.REVOKED, GrantStatus.FAILED):
                    report.revoked += 1
                elif status == GrantStatus.ACTIVE:
                    report.applied += 1
                else:
                    report.still_pending += 1
            if len(work) < batch:
                break
    finally:
        if own_pool:
            executor.shutdown(wait=True)
    report.overdue_flagged = flag_overdue_grants(rt)
    report.reminders = queue_reminders(rt)
    return report


def _safe_finish(rt: Runtime, grant: Grant) -> str:
    try:
        return _finish(rt, grant)
    except Exception:
        log.exception("reaper: grant %s could not be finished this round", grant.id)
        return grant.status


def flag_overdue_grants(rt: Runtime) -> int:
    """Grants past expiry + allowed lag that are still not revoked get one alert each."""
    now = rt.clock.now()
    limit = now - timedelta(seconds=rt.overdue_after_s)
    flagged = 0
    with rt.db.transaction() as session:
        rows = session.scalars(
            select(Grant)
            .where(
                Grant.status.in_((GrantStatus.ACTIVE, GrantStatus.APPLYING, GrantStatus.REVOKING)),
                Grant.expires_at < limit,
                Grant.overdue_at.is_(None),
            )
            .limit(500)
        ).all()
        for grant in rows:
            won = session.execute(
                update(Grant).where(Grant.id == grant.id, Grant.overdue_at.is_(None)).values(overdue_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if won:
                flag_overdue(session, grant, now=now, error=grant.last_error or "not revoked yet")
                flagged += 1
    return flagged


def queue_reminders(rt: Runtime) -> int:
    """A DM a few minutes before expiry, once per grant (and again after an extension)."""
    now = rt.clock.now()
    soon = now + timedelta(seconds=rt.reminder_before_s)
    count = 0
    with rt.db.transaction() as session:
        rows = session.scalars(
            select(Grant)
            .where(
                Grant.status == GrantStatus.ACTIVE,
                Grant.expires_at <= soon,
                Grant.expires_at > now,
                Grant.reminded_at.is_(None),
            )
            .limit(500)
        ).all()
        for grant in rows:
            won = session.execute(
                update(Grant).where(Grant.id == grant.id, Grant.reminded_at.is_(None)).values(reminded_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if won:
                enqueue(
                    session,
                    "grant.reminder",
                    now=now,
                    request_id=grant.request_id,
                    grant_id=grant.id,
                )
                count += 1
    return count
