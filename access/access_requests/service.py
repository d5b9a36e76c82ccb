"""Queries and conditional transitions on access requests. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from access.access_requests.models import AccessRequest, Approval, RequestStatus


def transition(session: Session, request_id: str, *, frm: str, to: str, **values: Any) -> bool:
    """`UPDATE ... WHERE id=:id AND status=:frm`; True when this caller won the transition."""
    result = session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.status == frm)
        .values(status=to, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def count_approval(session: Session, request_id: str) -> int | None:
    """Atomically add one approval to a pending request; the new count, or None if not pending."""
    result = session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.status == RequestStatus.PENDING)
        .values(approvals_count=AccessRequest.approvals_count + 1)
        .returning(AccessRequest.approvals_count)
        .execution_options(synchronize_session=False)
    )
    row = result.first()
    return None if row is None else int(row[0])


def approvers_of(session: Session, request_id: str) -> list[str]:
    return list(
        session.scalars(
            select(Approval.approver_id).where(Approval.request_id == request_id).order_by(Approval.id)
        )
    )


def pending_for_requester(session: Session, requester_id: str, instance_id: str) -> AccessRequest | None:
    return session.scalars(
        select(AccessRequest).where(
            AccessRequest.requester_id == requester_id,
            AccessRequest.instance_id == instance_id,
            AccessRequest.status == RequestStatus.PENDING,
        )
    ).first()


def pending_requests(session: Session, *, limit: int = 50) -> Sequence[AccessRequest]:
    return session.scalars(
        select(AccessRequest)
        .where(AccessRequest.status == RequestStatus.PENDING)
        .order_by(AccessRequest.created_at)
        .limit(limit)
    ).all()


def timed_out(session: Session, now: datetime, *, limit: int = 200) -> list[str]:
    return list(
        session.scalars(
            select(AccessRequest.id)
            .where(
                AccessRequest.status == RequestStatus.PENDING,
                AccessRequest.approval_deadline <= now,
            )
            .limit(limit)
        )
    )
