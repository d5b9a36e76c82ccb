"""Overdue grants: one alert for each grant that outlived its expiry by more than the allowed lag."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from access.audit.service import record
from access.grants.models import Grant
from access.outbox.service import enqueue


def flag_revoked_late(
    session: Session, grants: Sequence[Grant], *, now: datetime, overdue_after_s: float | None
) -> int:
    """One overdue alert for each of these just-revoked grants that was late and never flagged."""
    if overdue_after_s is None:
        return 0
    flagged = 0
    for grant in grants:
        late_s = (now - grant.expires_at).total_seconds()
        if grant.overdue_at is not None or late_s <= overdue_after_s:
            continue
        marked = session.execute(
            update(Grant)
            .where(Grant.id == grant.id, Grant.overdue_at.is_(None))
            .values(overdue_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(marked, "rowcount", 0) == 1:
            flag_overdue(session, grant, now=now, error="", revoked_late_s=round(late_s, 1))
            flagged += 1
    return flagged


def flag_overdue(
    session: Session, grant: Grant, *, now: datetime, error: str, revoked_late_s: float | None = None
) -> None:
    """One alert per grant that outlived its expiry by more than the allowed lag.

    `revoked_late_s` is set when the grant is already revoked, just that late.
    """
    detail: dict[str, object] = {"error": error[:500], "expired_at": grant.expires_at.isoformat()}
    payload: dict[str, object] = {"error": error[:500]}
    if revoked_late_s is not None:
        detail["revoked_late_s"] = payload["revoked_late_s"] = revoked_late_s
    record(
        session,
        "grant.overdue",
        actor="eice",
        at=now,
        request_id=grant.request_id,
        grant_id=grant.id,
        instance_id=grant.instance_id,
        detail=detail,
    )
    enqueue(
        session,
        "grant.overdue",
        now=now,
        request_id=grant.request_id,
        grant_id=grant.id,
        payload=payload,
    )
