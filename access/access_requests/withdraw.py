"""Withdrawing: the requester cancels their own pending request."""

from __future__ import annotations

from sqlalchemy.orm import Session

from access.access_requests.decide import end_pending
from access.access_requests.models import AccessRequest, RequestStatus
from access.config.permissions import Actor
from access.errors import NotFound, NotPermitted
from access.runtime import Runtime


def cancel(session: Session, rt: Runtime, request_id: str, actor: Actor) -> AccessRequest:
    """The requester withdraws a pending request."""
    now = rt.clock.now()
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound(f"no request {request_id}")
    if actor.user_id != request.requester_id:
        raise NotPermitted("only the requester can cancel a request")
    return end_pending(
        session, request, to=RequestStatus.CANCELLED, event="request.cancelled", actor=actor.user_id, now=now
    )
