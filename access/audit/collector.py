"""The CloudTrail collector: one paginated LookupEvents per region and source per poll.

Events are kept once (by EventId), tied to the grant that allowed them by principal,
target and time, and the rest ("someone used EICE without this bot") is kept as
out-of-band and announced (see `access.audit.store`). CloudTrail delivers late
(minutes, sometimes over an hour) and not in eventTime order, so each poll starts an
overlap window before the newest eventTime already seen; and once every `[audit]
late_pass_every` a "late pass" reads back `[audit] late_window` before it, a few pages a
poll, for what came later than the overlap.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy.orm import Session

from access.audit.cloudtrail_models import CollectorWatermark
from access.audit.matching import ParsedEvent, parse_event
from access.audit.ratelimit import RateLimiter, limiter_for
from access.audit.service import chain_head
from access.audit.store import (
    EICE_SOURCE,
    IAM_SOURCE,
    POLICY_EVENTS,
    PollReport,
    lock_collection,
    store_page,
)
from access.aws.calls import AWS_FAILURES, error_code, is_retryable
from access.outbox.service import enqueue
from access.runtime import Runtime

# How long one page of collection waits for a revocation storm to pass.
MAX_YIELD_S = 120.0
# A late pass's share of one poll: about 13 s at 1.5 calls a second, so that a Lambda tick
# (55 s) always has room for it; a longer pass goes on at the next poll.
LATE_CALLS_PER_POLL = 20

__all__ = [
    "EICE_SOURCE",
    "IAM_REGION",
    "IAM_SOURCE",
    "POLICY_EVENTS",
    "CloudTrailCollector",
    "PollReport",
    "RateLimiter",
    "chain_witness",
    "collector_tick",
    "limiter_for",
]

log = logging.getLogger(__name__)

IAM_REGION = "us-east-1"


class CloudTrailCollector:
    """Collects EICE (and the bot's own IAM) CloudTrail events into `cloudtrail_events`.

    Args:
        rt: the runtime (database, config regions, AWS clients, clock).
        overlap: how far before the watermark each poll starts again (default `[audit]`).
        late_window: how far before it a late pass starts (default `[audit]`).
        late_every: how often a late pass starts (default `[audit]`).
        late_calls: LookupEvents calls a late pass may make in one poll; it goes on at the next.
        lookback: where the very first poll starts.
        rate_per_s: LookupEvents calls a second per region (CloudTrail allows 2).
        expiry_grace: how long after a grant's end a refused attempt still belongs to it.
        account: the account the watermarks are kept under (default: STS caller identity).
    """

    def __init__(
        self,
        rt: Runtime,
        *,
        overlap: timedelta | None = None,
        late_window: timedelta | None = None,
        late_every: timedelta | None = None,
        late_calls: int = LATE_CALLS_PER_POLL,
        lookback: timedelta = timedelta(hours=1),
        rate_per_s: float = 1.5,
        expiry_grace: timedelta = timedelta(hours=1),
        account: str | None = None,
        max_attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rt = rt
        audit = rt.config.audit
        self.overlap = audit.overlap if overlap is None else overlap
        self.late_window = audit.late_window if late_window is None else late_window
        self.late_every = audit.late_pass_every if late_every is None else late_every
        self.late_calls = late_calls
        self.lookback = lookback
        self.rate_per_s = rate_per_s
        self.expiry_grace = expiry_grace
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._account = account

    @property
    def account(self) -> str:
        """The AWS account the watermarks are kept under (read from STS on first use)."""
        if self._account is None:
            try:
                sts = self.rt.clients.client("sts", IAM_REGION)
                self._account = str(sts.get_caller_identity()["Account"])
            except Exception:  # the watermark key only; never fail a poll over it
                log.warning("could not read the account id; keeping watermarks under 'self'")
                self._account = "self"
        return self._account

    def poll(self) -> PollReport:
        """One pass over every configured region, then the bot's IAM calls in us-east-1.

        A region that fails (after the retries) is reported in `failed` and skipped: the
        others are still collected, and its watermark stays where it was, so the next poll
        starts it again from there.
        """
        report = PollReport()
        sources = [(region, EICE_SOURCE) for region in self.rt.regions] + [(IAM_REGION, IAM_SOURCE)]
        for region, source in sources:
            try:
                self._poll_source(region, source, report)
            except AWS_FAILURES as exc:
                why = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
                report.failed[f"{region}/{source}"] = why
                log.error("CloudTrail %s in %s: %s; the other regions go on", source, region, exc)
        return report

    def _poll_source(self, region: str, source: str, report: PollReport) -> None:
        now = self.rt.clock.now()
        with self.rt.db.transaction() as session:
            row = session.get(CollectorWatermark, (self.account, region, source))
            previous = row.watermark if row else None
        # The first poll reads back `lookback`: nothing older is this bot's business.
        start = previous - self.overlap if previous else now - self.lookback
        newest = previous
        for page, _more in self._pages(region, source, start, now, report):
            parsed = self._store(page, report)
            if parsed:
                page_newest = max(p.event_time for p in parsed)
                newest = page_newest if newest is None else max(newest, page_newest)
        if newest is not None:
            with self.rt.db.transaction() as session:
                self._save_watermark(session, region, source, newest)
            report.watermarks[f"{region}/{source}"] = newest.isoformat()
        if source == EICE_SOURCE:  # the bot's own IAM calls are matched when it makes them
            self._late_pass(region, source, report)

    def _store(self, page: list[dict[str, Any]], report: PollReport) -> list[ParsedEvent]:
        """Store one page of events (each new one once); returns them parsed."""
        self._yield_to_revocations()
        parsed = [parse_event(e) for e in page]
        report.seen += len(parsed)
        with self.rt.db.transaction() as session:
            store_page(
                session,
                parsed,
                clock=self.rt.clock,
                grace=self.expiry_grace,
                report=report,
                deployment=self.rt.config.aws.deployment,
            )
        return parsed

    def _late_pass(self, region: str, source: str, report: PollReport) -> None:
        """Read what was delivered later than the overlap: `[watermark - late_window,
        watermark - overlap]`, once every `late_every`, newest first.

        A pass reads at most `late_calls` pages per poll and keeps where it got to (the
        range still to read) after each page, so a long one goes on at the next poll
        instead of starting again: a Lambda tick cut off at its timeout loses one page.
        """
        now = self.rt.clock.now()
        with self.rt.db.transaction() as session:
            row = session.get(CollectorWatermark, (self.account, region, source))
            if row is None:
                return  # nothing seen yet: the first poll's lookback covered it
            if row.late_until is None or row.late_from is None:
                if row.late_pass_at is not None and now - row.late_pass_at < self.late_every:
                    return
                row.late_from = row.watermark - self.late_window
                row.late_until = row.watermark - self.overlap
                row.late_pass_at = now
            start, until = row.late_from, row.late_until
        key = f"{region}/{source}"
        for calls, (page, more) in enumerate(self._pages(region, source, start, until, report), start=1):
            parsed = self._store(page, report)
            oldest = min((p.event_time for p in parsed), default=None)
            with self.rt.db.transaction() as session:
                row = session.get(CollectorWatermark, (self.account, region, source))
                if row is None:
                    return
                if not more:
                    row.late_from = row.late_until = None
                    report.late_passes.append(key)
                    report.late_left.pop(key, None)
                    return
                if oldest is not None and row.late_until is not None and oldest < row.late_until:
                    row.late_until = oldest  # inclusive: events of that second are read again, kept once
                left = row.late_until
            # Stop only once the pass has moved (a page of 50 events in one second does not).
            if calls >= self.late_calls and left is not None and left < until:
                report.late_left[key] = left.isoformat()
                return

    def _yield_to_revocations(self) -> None:
        """Wait (up to `MAX_YIELD_S` per page) while the reaper is revoking: access ending
        on time comes before its audit trail, which the watermark lets us collect later."""
        busy = self.rt.revoking_now
        deadline = time.monotonic() + MAX_YIELD_S
        while busy is not None and busy() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _pages(
        self, region: str, source: str, start: datetime, end: datetime, report: PollReport
    ) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """LookupEvents pages for `[start, end]`, newest first, each with whether more follow."""
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
            token = answer.get("NextToken")
            yield list(answer.get("Events") or []), bool(token)
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

    def _save_watermark(self, session: Session, region: str, source: str, newest: datetime) -> None:
        """Move the watermark forward (never back)."""
        lock_collection(session)  # two servers' first polls would both insert the row
        row = session.get(CollectorWatermark, (self.account, region, source))
        now = self.rt.clock.now()
        if row is None:
            # The first poll read back `lookback`: the first late pass is due `late_every` on.
            session.add(
                CollectorWatermark(
                    account=self.account,
                    region=region,
                    source=source,
                    watermark=newest,
                    updated_at=now,
                    late_pass_at=now,
                )
            )
        elif newest > row.watermark:
            row.watermark, row.updated_at = newest, now


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
