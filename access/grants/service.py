"""Queries, conditional transitions and atomic work claims on grants. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, defer

from access.grants.models import Grant, GrantStatus

LIVE = (GrantStatus.APPLYING, GrantStatus.ACTIVE)


def transition(
    session: Session, grant_id: str, *, frm: str | tuple[str, ...], to: str, **values: Any
) -> bool:
    """`UPDATE ... WHERE id=:id AND status IN (:frm)`; True when this caller won."""
    sources = (frm,) if isinstance(frm, str) else frm
    result = session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.status.in_(sources))
        .values(status=to, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def live_grant_for(session: Session, requester_id: str, instance_id: str) -> Grant | None:
    return session.scalars(
        select(Grant)
        .where(
            Grant.requester_id == requester_id,
            Grant.instance_id == instance_id,
            Grant.status.in_(LIVE),
        )
        .limit(1)
    ).first()


def find(session: Session, grant_id: str) -> Grant | None:
    return session.get(Grant, grant_id)


def active_for_requester(session: Session, requester_id: str) -> Sequence[Grant]:
    return session.scalars(
        select(Grant)
        .where(Grant.requester_id == requester_id, Grant.status.in_((*LIVE, GrantStatus.REVOKING)))
        .order_by(Grant.expires_at)
    ).all()


def live_grants(session: Session) -> Sequence[Grant]:
    return session.scalars(select(Grant).where(Grant.status.in_(LIVE)).order_by(Grant.expires_at)).all()


def next_expiry(session: Session, *, after: datetime) -> datetime | None:
    """The earliest `expires_at` of an active grant still in the future (index-only on status, expires_at)."""
    return session.scalar(
        select(Grant.expires_at)
        .where(Grant.status == GrantStatus.ACTIVE, Grant.expires_at > after)
        .order_by(Grant.expires_at)
        .limit(1)
    )


def principals_ever_granted(session: Session) -> list[str]:
    return list(session.scalars(select(Grant.principal_arn).distinct()))


def due_condition(now: datetime) -> Any:
    """Grants some worker must act on now: expired, half-applied, half-revoked or stale."""
    free = or_(Grant.claim_expires_at.is_(None), Grant.claim_expires_at < now)
    ready = or_(Grant.next_attempt_at.is_(None), Grant.next_attempt_at <= now)
    return or_(
        and_(Grant.status == GrantStatus.ACTIVE, Grant.expires_at <= now, free),
        and_(
            Grant.status == GrantStatus.ACTIVE,
            Grant.applied_version < Grant.policy_version,
            free,
            ready,
        ),
        and_(Grant.status.in_((GrantStatus.APPLYING, GrantStatus.REVOKING)), free, ready),
    )


def claim_due(session: Session, *, worker: str, now: datetime, lease_s: float, limit: int) -> list[Grant]:
    """Atomically claim up to `limit` due grants, the most overdue first.

    PostgreSQL: `FOR UPDATE SKIP LOCKED` so replicas take disjoint batches. SQLite:
    the transaction began with `BEGIN IMMEDIATE`, so nobody else writes meanwhile.
    Expired grants move to `revoking` in the same statement. The grants come back
    without their policy document loaded.
    """
    ids = list(
        session.scalars(
            select(Grant.id)
            .where(due_condition(now))
            .order_by(Grant.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not ids:
        return []
    lease = now + timedelta(seconds=lease_s)
    # Expired and not yet revoking: revoke. Everything else keeps its status.
    session.execute(
        update(Grant)
        .where(Grant.id.in_(ids), Grant.status.in_(LIVE), Grant.expires_at <= now)
        .values(status=GrantStatus.REVOKING)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Grant)
        .where(Grant.id.in_(ids))
        .values(claimed_by=worker, claim_expires_at=lease)
        .execution_options(synchronize_session=False)
    )
    # The policy document stays unloaded: decoding 200 of them per claim is most of a storm's CPU,
    # and whoever finishes a grant reads what it needs again under its claim.
    return list(
        session.scalars(
            select(Grant)
            .options(defer(Grant.policy_document))
            .where(Grant.id.in_(ids))
            .order_by(Grant.expires_at)
        )
    )


def release(session: Session, grant_id: str, *, worker: str, **values: Any) -> bool:
    """Drop our claim (and set `values`) if we still hold it."""
    result = session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.claimed_by == worker)
        .values(claimed_by=None, claim_expires_at=None, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
