"""The CloudTrail collector: one paginated LookupEvents per region and source per poll.

Events are kept once (by EventId), tied to the grant that allowed them by principal,
target and time, and the rest ("someone used EICE without this bot") is kept as
out-of-band and announced. CloudTrail delivers late (minutes, sometimes over an hour)
and not in eventTime order, so each poll starts an overlap window before the newest
eventTime already seen.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from access.audit.cloudtrail_models import CloudTrailEvent, CollectorWatermark
from access.audit.matching import ParsedEvent, match_grant, parse_event
from access.audit.service import chain_head, record
from access.aws.calls import error_code, is_retryable
from access.grants.models import Grant
from access.outbox.service import enqueue
from access.runtime import Runtime

log = logging.getLogger(__name__)

EICE_SOURCE = "ec2-instance-connect.amazonaws.com"
IAM_SOURCE = "iam.amazonaws.com"
IAM_REGION = "us-east-1"
POLICY_EVENTS = frozenset({"PutRolePolicy", "DeleteRolePolicy", "PutUserPolicy", "DeleteUserPolicy"})
GRANT_POLICY_PREFIX = "eice-grant-"


class RateLimiter:
    """A token bucket of capacity one: calls are spaced at least 1/rate seconds apart."""

    def __init__(
        self,
        rate_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until a call may be made."""
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            self._sleep(at - now)


# CloudTrail's limit is per account and region, so every collector in the process shares one
# bucket per region.
_LIMITERS: dict[tuple[str, float], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(region: str, rate_per_s: float) -> RateLimiter:
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault((region, rate_per_s), RateLimiter(rate_per_s))


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


class CloudTrailCollector:
    """Collects EICE (and the bot's own IAM) CloudTrail events into `cloudtrail_events`.

    Args:
        rt: the runtime (database, config regions, AWS clients, clock).
        overlap: how far before the watermark each poll starts again (late delivery).
        lookback: where the very first poll starts.
        rate_per_s: LookupEvents calls a second per region (CloudTrail allows 2).
        expiry_grace: how long after a grant's end a refused attempt still belongs to it.
        account: the account the watermarks are kept under (default: STS caller identity).
    """

    def __init__(
        self,
        rt: Runtime,
        *,
        overlap: timedelta = timedelta(minutes=15),
        lookback: timedelta = timedelta(hours=1),
        rate_per_s: float = 1.5,
        expiry_grace: timedelta = timedelta(hours=1),
        account: str | None = None,
        max_attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rt = rt
        self.overlap = overlap
        self.lookback = lookback
        self.rate_per_s = rate_per_s
        self.expiry_grace = expiry_grace
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._account = account

    @property
    def account(self) -> str:
        if self._account is None:
            try:
                sts = self.rt.clients.client("sts", IAM_REGION)
                self._account = str(sts.get_caller_identity()["Account"])
            except Exception:  # the watermark key only; never fail a poll over it
                log.warning("could not read the account id; keeping watermarks under 'self'")
                self._account = "self"
        return self._account

    def poll(self) -> PollReport:
        """One pass over every configured region, then the bot's IAM calls in us-east-1."""
        report = PollReport()
        for region in self.rt.regions:
            self._poll_source(region, EICE_SOURCE, report)
        self._poll_source(IAM_REGION, IAM_SOURCE, report)
        return report

    def _poll_source(self, region: str, source: str, report: PollReport) -> None:
        now = self.rt.clock.now()
        with self.rt.db.transaction() as session:
            row = session.get(CollectorWatermark, (self.account, region, source))
            previous = row.watermark if row else None
        start = previous - self.overlap if previous else now - self.lookback
        newest = previous
        for page in self._pages(region, source, start, now, report):
            parsed = [parse_event(e) for e in page]
            report.seen += len(parsed)
            if parsed:
                page_newest = max(p.event_time for p in parsed)
                newest = page_newest if newest is None else max(newest, page_newest)
            with self.rt.db.transaction() as session:
                self._store(session, parsed, report)
        if newest is not None:
            with self.rt.db.transaction() as session:
                self._save_watermark(session, region, source, newest)
            report.watermarks[f"{region}/{source}"] = newest.isoformat()

    def _pages(
        self, region: str, source: str, start: datetime, end: datetime, report: PollReport
    ) -> Iterator[list[dict[str, Any]]]:
        client = self.rt.clients.cloudtrail(region)
        limiter = limiter_for(region, self.rate_per_s)
        params: dict[str, Any] = {
            "LookupAttributes": [{"AttributeKey": "EventSource", "AttributeValue": source}],
            "StartTime": start,
            "EndTime": end,
            "MaxResults": 50,
        }
        token: str | None = None
        while True:
            call = dict(params, NextToken=token) if token else params
            answer = self._call(client, limiter, call, report)
            report.pages += 1
            yield list(answer.get("Events") or [])
            token = answer.get("NextToken")
            if not token:
                return

    def _call(
        self, client: Any, limiter: RateLimiter, params: dict[str, Any], report: PollReport
    ) -> dict[str, Any]:
        for attempt in range(1, self.max_attempts + 1):
            limiter.acquire()
            report.calls += 1
            try:
                return dict(client.lookup_events(**params))
            except ClientError as exc:
                if attempt == self.max_attempts or not is_retryable(exc):
                    raise
                if error_code(exc) == "ThrottlingException":
                    report.throttled += 1
                self._sleep(min(8.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")

    def _store(self, session: Session, events: list[ParsedEvent], report: PollReport) -> None:
        if not events:
            return
        ids = {e.event_id for e in events}
        known = set(
            session.scalars(select(CloudTrailEvent.event_id).where(CloudTrailEvent.event_id.in_(ids)))
        )
        fresh = {e.event_id: e for e in events if e.event_id not in known}
        if not fresh:
            return
        now = self.rt.clock.now()
        eice = [e for e in fresh.values() if e.event_source == EICE_SOURCE]
        iam = [e for e in fresh.values() if e.event_source == IAM_SOURCE and e.event_name in POLICY_EVENTS]
        grants = self._candidate_grants(session, eice)
        for event in sorted(eice, key=lambda e: (e.event_time, e.event_id)):
            self._store_eice(session, event, grants, now, report)
        if iam:
            self._store_iam(session, iam, now, report)
        report.new += len(eice) + len(iam)

    def _candidate_grants(self, session: Session, events: list[ParsedEvent]) -> list[Grant]:
        principals = {e.principal_arn for e in events if e.principal_arn}
        if not principals:
            return []
        earliest = min(e.event_time for e in events) - self.expiry_grace - timedelta(days=1)
        latest = max(e.event_time for e in events) + timedelta(minutes=1)
        return list(
            session.scalars(
                select(Grant).where(
                    Grant.principal_arn.in_(principals),
                    Grant.starts_at <= latest,
                    or_(Grant.expires_at >= earliest, Grant.revoked_at >= earliest),
                )
            )
        )

    def _store_eice(
        self,
        session: Session,
        event: ParsedEvent,
        grants: list[Grant],
        now: datetime,
        report: PollReport,
    ) -> None:
        found = match_grant(event, grants, grace=self.expiry_grace)
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
            enqueue(
                session,
                "audit.connection",
                now=now,
                request_id=grant.request_id,
                grant_id=grant.id,
                payload=dict(detail, kind=kind, requester_id=grant.requester_id),
            )
            return
        report.out_of_band += 1
        record(
            session,
            "connection.out_of_band",
            actor=(event.principal_arn or "unknown")[:128],
            at=event.event_time,
            instance_id=event.instance_id,
            detail=detail,
        )
        enqueue(session, "audit.out_of_band", now=now, payload=detail)

    def _store_iam(
        self, session: Session, events: list[ParsedEvent], now: datetime, report: PollReport
    ) -> None:
        request_ids = {e.aws_request_id for e in events if e.aws_request_id}
        policy_ids = {
            e.policy_name[len(GRANT_POLICY_PREFIX) :]
            for e in events
            if e.policy_name and e.policy_name.startswith(GRANT_POLICY_PREFIX)
        }
        grants = list(
            session.scalars(
                select(Grant).where(
                    or_(
                        Grant.put_request_id.in_(request_ids),
                        Grant.delete_request_id.in_(request_ids),
                        Grant.id.in_(policy_ids),
                    )
                )
            )
        )
        by_request = {g.put_request_id: g for g in grants if g.put_request_id}
        by_request.update({g.delete_request_id: g for g in grants if g.delete_request_id})
        by_id = {g.id: g for g in grants}
        for event in events:
            grant = by_request.get(event.aws_request_id or "")
            if grant is None and event.policy_name:
                grant = by_id.get(event.policy_name.removeprefix(GRANT_POLICY_PREFIX))
            if grant is None and not (event.policy_name or "").startswith(GRANT_POLICY_PREFIX):
                continue  # someone else's IAM call: not this bot's business
            session.add(_row(event, now, match="bot_iam", grant=grant, flag=None))
            report.bot_iam += 1
        session.flush()

    def _save_watermark(self, session: Session, region: str, source: str, newest: datetime) -> None:
        row = session.get(CollectorWatermark, (self.account, region, source))
        now = self.rt.clock.now()
        if row is None:
            session.add(
                CollectorWatermark(
                    account=self.account,
                    region=region,
                    source=source,
                    watermark=newest,
                    updated_at=now,
                )
            )
        elif newest > row.watermark:
            row.watermark, row.updated_at = newest, now


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


def collector_tick(rt: Runtime, collector: CloudTrailCollector | None = None) -> dict[str, Any]:
    """The scheduler's collector job: one poll; returns its report as a dict."""
    report = (collector or CloudTrailCollector(rt)).poll()
    return json.loads(json.dumps(report.__dict__))


def chain_witness(rt: Runtime) -> dict[str, Any]:
    """Queue the audit chain's head (seq, hash) for the audit channel, an outside witness."""
    now = rt.clock.now()
    with rt.db.transaction() as session:
        seq, head = chain_head(session)
        payload = {"seq": seq, "hash": head, "at": now.isoformat()}
        enqueue(session, "audit.chain_head", now=now, payload=payload)
    return payload
