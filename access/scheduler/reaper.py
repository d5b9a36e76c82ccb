"""The reaper: finishes whatever is due, whoever started it and whether or not they crashed.

Due work: grants past `expires_at`, grants stuck in `applying`/`revoking` whose claim
lapsed, extended grants whose new document is not in IAM yet, and pending requests
past their approval deadline. Claims are atomic, so replicas split the work.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from access.access_requests.timeouts import expire_timed_out
from access.failpoints import failpoint
from access.grants import service
from access.grants.finish import finish_revoked_many
from access.grants.flows import apply_grant
from access.grants.models import Grant, GrantStatus
from access.grants.overdue import flag_overdue
from access.grants.revoke import revoke_failed, revoke_grant
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
    rt: Runtime,
    *,
    batch: int = 200,
    max_rounds: int = 1000,
    pool: ThreadPoolExecutor | None = None,
    housekeeping: bool = True,
) -> ReapReport:
    """Run until nothing is due (or `max_rounds` batches), returning what was done.

    Args:
        rt: the runtime.
        batch: grants claimed per round.
        max_rounds: stop after this many rounds even if more is due.
        pool: threads for the IAM calls (one is made for this pass when None).
        housekeeping: also time out pending requests, flag overdue grants and queue
            reminders. The scheduler skips them on passes that come sooner than its
            interval after the last, so a storm of expiries spends its passes on revoking.
    """
    report = ReapReport()
    if housekeeping:
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
                # Detach plain values for the workers: no session crosses threads.
                revoking = [
                    (g.id, g.principal_arn, g.policy_name)
                    for g in claimed
                    if g.status == GrantStatus.REVOKING
                ]
                others = {g.id: g for g in claimed if g.status != GrantStatus.REVOKING}
            if not claimed:
                break
            results = list(_safe_revoke(rt, revoking, executor).items())
            results += executor.map(lambda g: (g.id, _safe_finish(rt, g)), list(others.values()))
            for grant_id, status in results:
                report.statuses[grant_id] = status
                if status in (GrantStatus.REVOKED, GrantStatus.FAILED):
                    report.revoked += 1
                elif status == GrantStatus.ACTIVE:
                    report.applied += 1
                else:
                    report.still_pending += 1
            if len(claimed) < batch:
                break
    finally:
        if own_pool:
            executor.shutdown(wait=True)
    if housekeeping:
        report.overdue_flagged = flag_overdue_grants(rt)
        report.reminders = queue_reminders(rt)
    return report


def revoke_claimed(
    rt: Runtime, claimed: list[tuple[str, str, str]], pool: Executor, *, commit_every: int = 50
) -> dict[str, str]:
    """Revoke grants this worker has just claimed as `revoking`; returns each one's status.

    The fast path for a storm of expiries: the claim already read (id, principal, policy
    name), so the DeleteRolePolicy calls start at once in `pool`, and the outcomes are
    committed `commit_every` grants to a transaction instead of two transactions per
    grant. The conditional UPDATE from `revoking` still decides each grant; a crash
    before a commit leaves claimed `revoking` rows that a later pass finishes (the
    delete is idempotent).
    """
    results: dict[str, str] = {}
    futures = {pool.submit(_delete, rt, principal, name): gid for gid, principal, name in claimed}
    deleted: dict[str, str | None] = {}
    # Commit each full chunk while the rest of the deletes are still in flight.
    for future in as_completed(futures):
        gid, outcome = futures[future], future.result()
        if isinstance(outcome, Exception):
            results[gid] = revoke_failed(rt, gid, outcome)
            continue
        deleted[gid] = outcome
        if len(deleted) >= commit_every:
            results.update(_commit_revoked(rt, deleted))
            deleted = {}
    if deleted:
        results.update(_commit_revoked(rt, deleted))
    return results


def _commit_revoked(rt: Runtime, deleted: dict[str, str | None]) -> dict[str, str]:
    failpoint("after_delete_before_commit")
    with rt.db.transaction() as session:
        return finish_revoked_many(session, deleted, now=rt.clock.now(), overdue_after_s=rt.overdue_after_s)


def _delete(rt: Runtime, principal: str, name: str) -> str | Exception | None:
    try:
        return rt.iam.delete(principal, name)
    except Exception as exc:
        return exc


def _safe_revoke(rt: Runtime, claimed: list[tuple[str, str, str]], pool: Executor) -> dict[str, str]:
    if not claimed:
        return {}
    try:
        return revoke_claimed(rt, claimed, pool)
    except Exception:
        log.exception("reaper: %d grants could not be revoked this round", len(claimed))
        return {gid: GrantStatus.REVOKING for gid, _, _ in claimed}


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
