"""Withdrawing: the requester cancels their own pending request."""

from __future__ import annotations

from sqlalchemy.orm import Session

from access.access_requests import service
from access.access_requests.models import AccessRequest, RequestStatus
from access.audit.service import record
from access.config.permissions import Actor
from access.errors import Conflict, NotFound, NotPermitted
from access.outbox.service import enqueue
from access.runtime import Runtime


def cancel(session: Session, rt: Runtime, request_id: str, actor: Actor) -> AccessRequest:
    """The requester withdraws a pending request."""
    now = rt.clock.now()
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound(f"no request {request_id}")
    if actor.user_id != request.requester_id:
        raise NotPermitted("only the requester can cancel a request")
    if not service.transition(
        session,
        request.id,
        frm=RequestStatus.PENDING,
        to=RequestStatus.CANCELLED,
        decided_at=now,
        decided_by=actor.user_id,
    ):
        session.refresh(request)
        raise Conflict(f"already {request.status}")
    record(
        session,
        "request.cancelled",
        actor=actor.user_id,
        at=now,
        request_id=request.id,
        instance_id=request.instance_id,
    )
    enqueue(session, "request.cancelled", now=now, request_id=request.id)
    session.refresh(request)
    return request
