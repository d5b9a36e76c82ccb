"""Queue and claim notifications. The Slack layer renders and delivers them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from access.outbox.models import OutboxMessage


def enqueue(
    session: Session,
    kind: str,
    *,
    now: datetime,
    request_id: str | None = None,
    grant_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> OutboxMessage:
    """Add a notification to the outbox, in the caller's transaction."""
    message = OutboxMessage(
        kind=kind,
        request_id=request_id,
        grant_id=grant_id,
        payload=payload or {},
        created_at=now,
        next_attempt_at=now,
        status="pending",
        attempts=0,
    )
    session.add(message)
    return message


def claim(
    session: Session, *, worker: str, now: datetime, lease_s: float, limit: int = 50
) -> list[OutboxMessage]:
    """Claim due pending messages, oldest first (SKIP LOCKED on PostgreSQL)."""
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.claim_expires_at.is_(None), OutboxMessage.claim_expires_at < now),
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(due))
    if not ids:
        return []
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .values(claimed_by=worker, claim_expires_at=now + timedelta(seconds=lease_s))
    )
    return list(
        session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id))
    )


def mark_sent(session: Session, message_id: int, *, worker: str, now: datetime) -> bool:
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.claimed_by == worker,
            OutboxMessage.status == "pending",
        )
        .values(status="sent", sent_at=now, claimed_by=None, claim_expires_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_failed(
    session: Session,
    message_id: int,
    *,
    worker: str,
    now: datetime,
    error: str,
    retry_in_s: float,
    give_up_after: int = 50,
) -> None:
    message = session.get(OutboxMessage, message_id)
    if message is None or message.claimed_by != worker:
        return
    message.attempts += 1
    message.last_error = error[:2000]
    message.claimed_by = None
    message.claim_expires_at = None
    if message.attempts >= give_up_after:
        message.status = "failed"
    else:
        message.next_attempt_at = now + timedelta(seconds=retry_in_s)
