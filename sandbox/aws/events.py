"""CloudTrail records and the log the sandbox delivers them from."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

EVENT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_event_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime(EVENT_TIME_FORMAT)


def parse_event_time(value: str) -> datetime:
    return datetime.strptime(value, EVENT_TIME_FORMAT).replace(tzinfo=UTC)


def cloudtrail_record(
    *,
    event_source: str,
    event_name: str,
    region: str,
    identity: dict,
    source_ip: str,
    user_agent: str,
    request_parameters: dict | None,
    response_elements: dict | None,
    resources: list[dict] | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    request_id: str | None = None,
    at: datetime | None = None,
    read_only: bool = False,
    account_id: str = "123456789012",
) -> dict:
    """A management-event record in CloudTrail's shape (what CloudTrailEvent holds as JSON)."""
    record: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": format_event_time(at or datetime.now(UTC)),
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
    }
    if error_code is not None:
        record["errorCode"] = error_code
    if error_message is not None:
        record["errorMessage"] = error_message
    record.update(
        {
            "requestParameters": request_parameters,
            "responseElements": response_elements,
            "requestID": request_id or str(uuid.uuid4()),
            "eventID": str(uuid.uuid4()),
            "readOnly": read_only,
        }
    )
    if resources is not None:
        record["resources"] = resources
    record.update(
        {
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": account_id,
            "eventCategory": "Management",
        }
    )
    return record


@dataclass(frozen=True)
class _Entry:
    record: dict
    event_time: datetime
    visible_at: datetime


class EventLog:
    """Every CloudTrail record the sandbox produced; thread-safe.

    A record becomes visible to LookupEvents `delay_s` after it happened, which models
    CloudTrail's delivery delay.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []
        self.delay_s = delay_s

    def record(self, record: dict, *, delay_s: float | None = None) -> dict:
        """Add a record; returns it. `delay_s` overrides the log's delivery delay for this one."""
        now = datetime.now(UTC)
        event_time = parse_event_time(record["eventTime"])
        # eventTime has whole seconds only: for a record of "now", count the delay from
        # the moment it was recorded, not from the truncated second.
        start = now if now - event_time < timedelta(seconds=1) else event_time
        delay = self.delay_s if delay_s is None else delay_s
        entry = _Entry(record, event_time, start + timedelta(seconds=delay))
        with self._lock:
            self._entries.append(entry)
        return record

    def all(self) -> list[dict]:
        """Everything recorded, visible or not, oldest first."""
        with self._lock:
            entries = list(self._entries)
        return [e.record for e in sorted(entries, key=lambda e: e.event_time)]

    def find(self, *, event_name: str | None = None) -> list[dict]:
        return [r for r in self.all() if event_name is None or r["eventName"] == event_name]

    def visible(self, *, now: datetime | None = None) -> list[dict]:
        """Records LookupEvents may return at `now`, oldest first."""
        at = now or datetime.now(UTC)
        with self._lock:
            entries = [e for e in self._entries if e.visible_at <= at]
        return [e.record for e in sorted(entries, key=lambda e: e.event_time)]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
