"""Ending a pending request by someone's decision: one conditional update, on the record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from access.access_requests import service
from access.access_requests.models import AccessRequest, RequestStatus
from access.audit.service import record
from access.errors import Conflict
from access.outbox.service import enqueue


def end_pending(
    session: Session,
    request: AccessRequest,
    *,
    to: RequestStatus,
    event: str,
    actor: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
    **values: Any,
) -> AccessRequest:
    """Move `request` from pending to `to` (only if nobody decided it first: else Conflict,
    naming what it became), with an audit row and an outbox message both called `event`.

    Returns the request as it now is.
    """
    if not service.transition(
        session, request.id, frm=RequestStatus.PENDING, to=to, decided_at=now, decided_by=actor, **values
    ):
        session.refresh(request)
        raise Conflict(f"already {request.status}")
    record(
        session,
        event,
        actor=actor,
        at=now,
        request_id=request.id,
        instance_id=request.instance_id,
        detail=detail,
    )
    enqueue(session, event, now=now, request_id=request.id)
    session.refresh(request)
    return request
