"""`/eice audit` and `eice audit`: who reached which instance, when, approved by whom.

Grants are selected first (by instance, requester, principal or id, newest first, on
the grants table's own indexes), then their approvals and events with one
`IN (...)` query each, so the cost follows the page size, not the table sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.access_requests.models import AccessRequest, Approval
from access.audit.cloudtrail_models import CloudTrailEvent
from access.grants.models import Grant


@dataclass(frozen=True)
class Connection:
    """One EICE call CloudTrail saw under a grant (or without one)."""

    at: datetime
    event_name: str
    source_ip: str | None
    user_agent: str | None
    allowed: bool
    error_code: str | None = None
    flag: str | None = None
    principal_arn: str | None = None
    instance_id: str | None = None
    event_id: str = ""


@dataclass(frozen=True)
class GrantAudit:
    """A grant with its people, its window and what was done with it."""

    grant_id: str
    request_id: str
    requester_id: str
    requester_name: str
    principal_arn: str
    instance_id: str
    instance_name: str
    region: str
    os_user: str
    port: int
    reason: str
    status: str
    starts_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    break_glass: bool
    auto_approved: bool
    approvers: list[str] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def _connection(row: CloudTrailEvent) -> Connection:
    return Connection(
        at=row.event_time,
        event_name=row.event_name,
        source_ip=row.source_ip,
        user_agent=row.user_agent,
        allowed=row.error_code is None,
        error_code=row.error_code,
        flag=row.flag,
        principal_arn=row.principal_arn,
        instance_id=row.instance_id,
        event_id=row.event_id,
    )


def audit_query(
    session: Session,
    *,
    since: datetime,
    instance_id: str | None = None,
    user_id: str | None = None,
    grant_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[GrantAudit]:
    """Grants created since `since` (newest first) matching every given filter, with events.

    Args:
        since: only grants created at or after this time.
        instance_id: an EC2 instance ID.
        user_id: the requester's Slack user ID, or an IAM principal ARN.
        grant_id: one grant.
        limit, offset: the page.
    """
    query = (
        select(Grant, AccessRequest)
        .join(AccessRequest, AccessRequest.id == Grant.request_id)
        .where(Grant.created_at >= since)
    )
    if instance_id:
        query = query.where(Grant.instance_id == instance_id)
    if user_id:
        if user_id.startswith("arn:"):
            query = query.where(Grant.principal_arn == user_id)
        else:
            query = query.where(Grant.requester_id == user_id)
    if grant_id:
        query = query.where(Grant.id == grant_id)
    query = query.order_by(Grant.created_at.desc(), Grant.id.desc()).limit(limit).offset(offset)
    pairs = session.execute(query).all()
    if not pairs:
        return []
    request_ids = [request.id for _, request in pairs]
    approvers: dict[str, list[str]] = {}
    for approval in session.scalars(
        select(Approval)
        .where(Approval.request_id.in_(request_ids))
        .order_by(Approval.created_at, Approval.id)
    ):
        approvers.setdefault(approval.request_id, []).append(approval.approver_id)
    connections: dict[str, list[Connection]] = {}
    for row in session.scalars(
        select(CloudTrailEvent)
        # No `match` condition here: it would tempt the planner off the grant_id index.
        .where(CloudTrailEvent.grant_id.in_([grant.id for grant, _ in pairs]))
        .order_by(CloudTrailEvent.event_time, CloudTrailEvent.id)
    ):
        if row.match != "grant":
            continue  # the bot's own IAM calls are in the grant's lifecycle already
        connections.setdefault(row.grant_id or "", []).append(_connection(row))
    return [
        GrantAudit(
            grant_id=grant.id,
            request_id=request.id,
            requester_id=grant.requester_id,
            requester_name=request.requester_name,
            principal_arn=grant.principal_arn,
            instance_id=grant.instance_id,
            instance_name=request.instance_name,
            region=grant.region,
            os_user=grant.os_user,
            port=grant.port,
            reason=request.reason,
            status=grant.status,
            starts_at=grant.starts_at,
            expires_at=grant.expires_at,
            revoked_at=grant.revoked_at,
            break_glass=grant.break_glass or request.break_glass,
            auto_approved=request.auto_approved,
            approvers=approvers.get(request.id, []),
            connections=connections.get(grant.id, []),
        )
        for grant, request in pairs
    ]


def out_of_band_events(
    session: Session,
    *,
    since: datetime,
    instance_id: str | None = None,
    principal_arn: str | None = None,
    limit: int = 50,
) -> list[Connection]:
    """EICE use no grant of this bot explains, newest first."""
    query = select(CloudTrailEvent).where(
        CloudTrailEvent.match == "out_of_band", CloudTrailEvent.event_time >= since
    )
    if instance_id:
        query = query.where(CloudTrailEvent.instance_id == instance_id)
    if principal_arn:
        query = query.where(CloudTrailEvent.principal_arn == principal_arn)
    query = query.order_by(CloudTrailEvent.event_time.desc(), CloudTrailEvent.id.desc())
    return [_connection(row) for row in session.scalars(query.limit(limit))]
