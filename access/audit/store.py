"""Storing a page of CloudTrail events: dedupe by EventId, tie each to its grant, record it.

A matched EICE event becomes an audit row under its grant and a line for the approval
thread; an unmatched one is kept as out-of-band use and announced. Of IAM events only
the bot's own grant-policy calls are kept, tied to their grant by request ID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session, defer

from access.audit.cloudtrail_models import CloudTrailEvent
from access.audit.matching import ParsedEvent, match_grant
from access.audit.service import record
from access.clock import Clock
from access.grants.models import Grant
from access.grants.policy import is_own_policy_name
from access.outbox.service import enqueue

EICE_SOURCE = "ec2-instance-connect.amazonaws.com"
IAM_SOURCE = "iam.amazonaws.com"
# Any constant other than the audit chain's: the key of the lock that orders page stores.
_STORE_LOCK = 0x6569636563740000  # "eicect"

POLICY_EVENTS = frozenset({"PutRolePolicy", "DeleteRolePolicy", "PutUserPolicy", "DeleteUserPolicy"})


@dataclass
class PollReport:
    """What one poll did, per (region, source) and in total."""

    calls: int = 0
    pages: int = 0
    seen: int = 0
    new: int = 0
    matched: int = 0
    out_of_band: int = 0
    bot_iam: int = 0
    throttled: int = 0
    watermarks: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # "region/source" -> error code
    late_passes: list[str] = field(default_factory=list)  # "region/source": a late pass ended
    late_left: dict[str, str] = field(default_factory=dict)  # "region/source" -> read down to (goes on)


def lock_collection(session: Session) -> None:
    """Order this transaction's collector writes after any other server's (two servers of
    one installation both collect). PostgreSQL: an advisory lock held to the transaction's
    end; SQLite's BEGIN IMMEDIATE already orders every write transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _STORE_LOCK})


def store_page(
    session: Session,
    events: list[ParsedEvent],
    *,
    clock: Clock,
    grace: timedelta,
    report: PollReport,
    deployment: str = "",
) -> None:
    """Keep the events not stored yet, matched to their grants; count them into `report`.

    Args:
        events: one LookupEvents page, parsed.
        clock: stamps `collected_at` and the outbox messages.
        grace: how long after a grant's end a refused attempt still belongs to it.
        deployment: `[aws] deployment`; IAM calls on other deployments' grant policies are
            not this bot's.
    """
    if not events:
        return
    # Taken before the look-up below: a second server storing the same page waits, then
    # finds the first one's rows, instead of failing on the event-ID key.
    lock_collection(session)
    ids = {e.event_id for e in events}
    known = set(session.scalars(select(CloudTrailEvent.event_id).where(CloudTrailEvent.event_id.in_(ids))))
    fresh = {e.event_id: e for e in events if e.event_id not in known}
    if not fresh:
        return
    now = clock.now()
    eice = [e for e in fresh.values() if e.event_source == EICE_SOURCE]
    iam = [e for e in fresh.values() if e.event_source == IAM_SOURCE and e.event_name in POLICY_EVENTS]
    grants = _candidate_grants(session, eice, grace)
    strays: list[dict[str, Any]] = []
    used: dict[str, tuple[Grant, list[dict[str, Any]]]] = {}  # grant id -> (grant, its events)
    for event in sorted(eice, key=lambda e: (e.event_time, e.event_id)):
        grant, detail = _store_eice(session, event, grants, now, grace, report)
        if grant is None:
            strays.append(detail)
        else:
            used.setdefault(grant.id, (grant, []))[1].append(detail)
    # One note per grant and one alert per page, not one per event: a grant used for hundreds
    # of sessions, or a burst of use nobody explains, must not flood a thread or a channel.
    for grant, details in used.values():
        payload = {"events": details}
        enqueue(
            session,
            "audit.connection",
            now=now,
            request_id=grant.request_id,
            grant_id=grant.id,
            payload=payload,
        )
    if strays:
        enqueue(session, "audit.out_of_band", now=now, payload={"events": strays})
    if iam:
        _store_iam(session, iam, now, report, deployment)
    report.new += len(eice) + len(iam)


def _candidate_grants(session: Session, events: list[ParsedEvent], grace: timedelta) -> list[Grant]:
    principals = {e.principal_arn for e in events if e.principal_arn}
    if not principals:
        return []
    earliest = min(e.event_time for e in events) - grace - timedelta(days=1)
    latest = max(e.event_time for e in events) + timedelta(minutes=1)
    return list(
        session.scalars(
            select(Grant)
            .options(defer(Grant.policy_document))
            .where(
                Grant.principal_arn.in_(principals),
                Grant.starts_at <= latest,
                or_(Grant.expires_at >= earliest, Grant.revoked_at >= earliest),
            )
        )
    )


def _store_eice(
    session: Session,
    event: ParsedEvent,
    grants: list[Grant],
    now: datetime,
    grace: timedelta,
    report: PollReport,
) -> tuple[Grant | None, dict[str, Any]]:
    """Store one EICE event; returns the grant that explains it (None when none does) and
    the event's detail to announce."""
    found = match_grant(event, grants, grace=grace)
    grant, flag = found if found else (None, None)
    if grant is None and event.instance_id is None and event.private_ip:
        event.instance_id = _instance_by_ip(session, event)
    row = _row(event, now, match="grant" if grant else "out_of_band", grant=grant, flag=flag)
    session.add(row)
    session.flush()
    detail = _detail(event, flag)
    if grant is not None:
        report.matched += 1
        kind = _audit_kind(event)
        record(
            session,
            kind,
            actor=grant.requester_id,
            at=event.event_time,
            request_id=grant.request_id,
            grant_id=grant.id,
            instance_id=grant.instance_id,
            detail=detail,
        )
        return grant, dict(detail, kind=kind, requester_id=grant.requester_id)
    report.out_of_band += 1
    record(
        session,
        "connection.out_of_band",
        actor=(event.principal_arn or "unknown")[:128],
        at=event.event_time,
        instance_id=event.instance_id,
        detail=detail,
    )
    return None, detail


def _store_iam(
    session: Session, events: list[ParsedEvent], now: datetime, report: PollReport, deployment: str
) -> None:
    request_ids = {e.aws_request_id for e in events if e.aws_request_id}
    names = {e.policy_name for e in events if e.policy_name and is_own_policy_name(e.policy_name, deployment)}
    grants = list(
        session.scalars(
            select(Grant)
            .options(defer(Grant.policy_document))
            .where(
                or_(
                    Grant.put_request_id.in_(request_ids),
                    Grant.delete_request_id.in_(request_ids),
                    Grant.policy_name.in_(names),
                )
            )
        )
    )
    by_request = {g.put_request_id: g for g in grants if g.put_request_id}
    by_request.update({g.delete_request_id: g for g in grants if g.delete_request_id})
    by_name = {g.policy_name: g for g in grants}
    for event in events:
        grant = by_request.get(event.aws_request_id or "") or by_name.get(event.policy_name or "")
        if grant is None and (event.policy_name or "") not in names:
            continue  # someone else's IAM call (another deployment's, or not a grant): not ours
        session.add(_row(event, now, match="bot_iam", grant=grant, flag=None))
        report.bot_iam += 1
    session.flush()


def _instance_by_ip(session: Session, event: ParsedEvent) -> str | None:
    """The instance behind an endpoint and private IP, as far as any grant knew it."""
    return session.scalar(
        select(Grant.instance_id)
        .where(Grant.endpoint_id == event.endpoint_id, Grant.private_ip == event.private_ip)
        .order_by(Grant.created_at.desc())
        .limit(1)
    )


def _audit_kind(event: ParsedEvent) -> str:
    if event.error_code:
        return "connection.refused"
    return "key.pushed" if event.event_name == "SendSSHPublicKey" else "connection.opened"


def _detail(event: ParsedEvent, flag: str | None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "event_id": event.event_id,
        "event_name": event.event_name,
        "event_time": event.event_time.isoformat(),
        "region": event.region,
        "principal_arn": event.principal_arn,
        "source_ip": event.source_ip,
        "user_agent": event.user_agent,
        "instance_id": event.instance_id,
        "endpoint_id": event.endpoint_id,
        "private_ip": event.private_ip,
        "port": event.port,
        "os_user": event.os_user,
        "error_code": event.error_code,
    }
    if flag:
        detail["flag"] = flag
    return detail


def _row(
    event: ParsedEvent, now: datetime, *, match: str, grant: Grant | None, flag: str | None
) -> CloudTrailEvent:
    return CloudTrailEvent(
        event_id=event.event_id,
        event_name=event.event_name,
        event_source=event.event_source,
        event_time=event.event_time,
        region=event.region,
        account_id=event.account_id,
        principal_arn=event.principal_arn,
        session_arn=event.session_arn,
        source_ip=event.source_ip,
        user_agent=event.user_agent,
        error_code=event.error_code,
        error_message=event.error_message,
        request_parameters=event.request_parameters,
        instance_id=grant.instance_id if grant else event.instance_id,
        endpoint_id=event.endpoint_id,
        private_ip=event.private_ip,
        port=event.port,
        os_user=event.os_user,
        aws_request_id=event.aws_request_id,
        grant_id=grant.id if grant else None,
        match=match,
        flag=flag,
        collected_at=now,
        raw=event.raw,
    )
