"""Finishing revoked grants: the conditional move from `revoking` to `revoked` (or
`failed`, if the grant never applied), one grant at a time or a batch at once,
with each winner's audit row and notification.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session, defer

from access.audit.service import AuditEntry, record_many
from access.grants import service
from access.grants.flows import APPLY_FAILED
from access.grants.models import Grant, GrantStatus
from access.grants.overdue import flag_revoked_late
from access.outbox.service import enqueue


def finish_revoked(
    session: Session,
    grant: Grant,
    request_id: str | None,
    *,
    now: datetime,
    overdue_after_s: float | None = None,
) -> str:
    """Mark one deleted grant revoked (or failed, if it never applied), with its audit row and note.

    A grant revoked more than `overdue_after_s` after its expiry that was never
    flagged (one long, retried delete can cross the line unseen) gets its one alert now.
    """
    failed = grant.applied_at is None and (grant.revoke_reason or "").startswith(APPLY_FAILED)
    final = GrantStatus.FAILED if failed else GrantStatus.REVOKED
    if not service.transition(
        session,
        grant.id,
        frm=GrantStatus.REVOKING,
        to=final,
        revoked_at=now,
        delete_request_id=request_id,
        claimed_by=None,
        claim_expires_at=None,
        next_attempt_at=None,
    ):
        return grant.status
    _revoked_notes(session, grant, final, request_id, now=now)
    flag_revoked_late(session, [grant], now=now, overdue_after_s=overdue_after_s)
    return final


def _revoked_notes(
    session: Session, grant: Grant, final: str, request_id: str | None, *, now: datetime
) -> None:
    record_many(session, [_revoked_entry(grant, final, request_id, now=now)])
    _revoked_note(session, grant, final, now=now)


def _revoked_entry(grant: Grant, final: str, request_id: str | None, *, now: datetime) -> AuditEntry:
    return AuditEntry(
        "grant.revoked" if final == GrantStatus.REVOKED else "grant.cleaned_up",
        actor=grant.revoked_by or "eice",
        at=now,
        request_id=grant.request_id,
        grant_id=grant.id,
        instance_id=grant.instance_id,
        detail={
            "aws_request_id": request_id,
            "reason": grant.revoke_reason or "expired",
            "lag_s": round((now - grant.expires_at).total_seconds(), 3),
        },
    )


def _revoked_note(session: Session, grant: Grant, final: str, *, now: datetime) -> None:
    enqueue(
        session,
        "grant.revoked" if final == GrantStatus.REVOKED else "grant.failed_cleaned",
        now=now,
        request_id=grant.request_id,
        grant_id=grant.id,
    )


def finish_revoked_many(
    session: Session,
    deleted: dict[str, str | None],
    *,
    now: datetime,
    overdue_after_s: float | None = None,
) -> dict[str, str]:
    """`finish_revoked` for a batch whose policies are deleted: two UPDATEs instead of one per grant.

    Each grant still moves only from `revoking` (`UPDATE ... RETURNING` says which won);
    the winners get their audit row and notification as one by one.
    """
    rows = session.scalars(
        select(Grant).options(defer(Grant.policy_document)).where(Grant.id.in_(list(deleted)))
    ).all()
    cleaned = {
        g.id for g in rows if g.applied_at is None and (g.revoke_reason or "").startswith(APPLY_FAILED)
    }
    won: set[str] = set()
    for final, group in ((GrantStatus.FAILED, cleaned), (GrantStatus.REVOKED, set(deleted) - cleaned)):
        if group:
            won.update(
                session.scalars(
                    update(Grant)
                    .where(Grant.id.in_(list(group)), Grant.status == GrantStatus.REVOKING)
                    .values(
                        status=final,
                        revoked_at=now,
                        claimed_by=None,
                        claim_expires_at=None,
                        next_attempt_at=None,
                    )
                    .returning(Grant.id)
                    .execution_options(synchronize_session=False)
                )
            )
    table = Grant.__table__
    assert isinstance(table, Table)
    ids = [{"gid": gid, "rid": deleted[gid]} for gid in sorted(won) if deleted[gid]]
    if ids:
        session.execute(
            update(table).where(table.c.id == bindparam("gid")).values(delete_request_id=bindparam("rid")),
            ids,
        )
    results: dict[str, str] = {}
    finished: list[tuple[Grant, str]] = []
    for grant in rows:
        outcome: str = GrantStatus.FAILED if grant.id in cleaned else GrantStatus.REVOKED
        results[grant.id] = outcome if grant.id in won else grant.status
        if grant.id in won:
            finished.append((grant, outcome))
    record_many(session, [_revoked_entry(g, end, deleted[g.id], now=now) for g, end in finished])
    for grant, end in finished:
        _revoked_note(session, grant, end, now=now)
    flag_revoked_late(session, [g for g, _ in finished], now=now, overdue_after_s=overdue_after_s)
    return results
