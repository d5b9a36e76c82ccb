"""Time-outs: pending requests nobody decided before their approval deadline."""

from __future__ import annotations

from sqlalchemy.orm import Session

from access.access_requests import service
from access.access_requests.models import RequestStatus
from access.audit.service import record
from access.outbox.service import enqueue
from access.runtime import Runtime


def expire_timed_out(session: Session, rt: Runtime) -> list[str]:
    """Pending requests past their approval deadline become expired (the requester is told)."""
    now = rt.clock.now()
    expired = []
    for request_id in service.timed_out(session, now):
        if service.transition(
            session,
            request_id,
            frm=RequestStatus.PENDING,
            to=RequestStatus.EXPIRED,
            decided_at=now,
            decided_by="timeout",
        ):
            record(session, "request.expired", actor="eice", at=now, request_id=request_id)
            enqueue(session, "request.expired", now=now, request_id=request_id)
            expired.append(request_id)
    return expired
