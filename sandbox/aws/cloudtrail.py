"""CloudTrail LookupEvents over the sandbox's event log, with the real API's limits."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sandbox.aws.events import EventLog, parse_event_time
from sandbox.aws.faults import FaultConfig

LOOKUP_EVENTS_TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"
LOOKUP_KEYS = frozenset(
    {
        "EventId",
        "EventName",
        "ReadOnly",
        "Username",
        "ResourceType",
        "ResourceName",
        "EventSource",
        "AccessKeyId",
    }
)
MAX_PAGE = 50


class CloudTrailError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TokenBucket:
    """`rate` calls a second with bursts of up to `rate` (at least one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: float | None = None
        self._last = time.monotonic()

    def take(self, rate: float) -> bool:
        capacity = max(rate, 1.0)
        with self._lock:
            now = time.monotonic()
            if self._tokens is None:
                self._tokens = capacity
            self._tokens = min(capacity, self._tokens + (now - self._last) * rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


def _username(identity: dict) -> str | None:
    kind = identity.get("type")
    if kind == "AssumedRole":
        return str(identity.get("arn", "")).rsplit("/", 1)[-1] or None
    if kind == "Root":
        return "root"
    return identity.get("userName")


def lookup_resources(record: dict) -> list[dict[str, str]]:
    """The Resources LookupEvents lists: the record's `resources` plus the IAM names in it."""
    found = [
        {"ResourceType": r.get("type", ""), "ResourceName": r.get("ARN", "")}
        for r in record.get("resources") or []
    ]
    params = record.get("requestParameters") or {}
    if record.get("eventSource") == "iam.amazonaws.com":
        for key, kind in (
            ("roleName", "AWS::IAM::Role"),
            ("userName", "AWS::IAM::User"),
            ("policyName", "AWS::IAM::Policy"),
        ):
            if key in params:
                found.append({"ResourceType": kind, "ResourceName": str(params[key])})
    return found


def _attribute_value(record: dict, key: str) -> list[str]:
    identity = record.get("userIdentity") or {}
    if key == "EventId":
        return [record["eventID"]]
    if key == "EventName":
        return [record["eventName"]]
    if key == "ReadOnly":
        return [str(bool(record.get("readOnly"))).lower()]
    if key == "Username":
        name = _username(identity)
        return [name] if name else []
    if key == "EventSource":
        return [record["eventSource"]]
    if key == "AccessKeyId":
        return [identity["accessKeyId"]] if identity.get("accessKeyId") else []
    field = "ResourceType" if key == "ResourceType" else "ResourceName"
    return [r[field] for r in lookup_resources(record)]


def _event(record: dict) -> dict[str, Any]:
    identity = record.get("userIdentity") or {}
    event: dict[str, Any] = {
        "EventId": record["eventID"],
        "EventName": record["eventName"],
        "ReadOnly": str(bool(record.get("readOnly"))).lower(),
        "EventTime": parse_event_time(record["eventTime"]).timestamp(),
        "EventSource": record["eventSource"],
        "Resources": lookup_resources(record),
        "CloudTrailEvent": json.dumps(record),
    }
    if identity.get("accessKeyId"):
        event["AccessKeyId"] = identity["accessKeyId"]
    username = _username(identity)
    if username:
        event["Username"] = username
    return event


def _time(body: dict, name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _query_hash(body: dict, region: str) -> str:
    same = {k: body.get(k) for k in ("LookupAttributes", "StartTime", "EndTime", "EventCategory")}
    same["region"] = region
    return hashlib.sha256(json.dumps(same, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _encode_token(query: str, last: tuple[str, str]) -> str:
    raw = json.dumps({"q": query, "t": last[0], "id": last[1]}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str, query: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if data["q"] != query:
            raise ValueError("token from another query")
        return str(data["t"]), str(data["id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CloudTrailError("InvalidNextTokenException", "Invalid NextToken.") from exc


def _validate(body: dict) -> tuple[str, str] | None:
    attributes = body.get("LookupAttributes") or []
    if len(attributes) > 1:
        raise CloudTrailError(
            "InvalidLookupAttributesException",
            "You cannot specify more than one lookup attribute per request.",
        )
    max_results = body.get("MaxResults", MAX_PAGE)
    if not isinstance(max_results, int) or not 1 <= max_results <= MAX_PAGE:
        raise CloudTrailError("InvalidMaxResultsException", "MaxResults must be a value between 1 and 50.")
    if not attributes:
        return None
    key = attributes[0].get("AttributeKey")
    if key not in LOOKUP_KEYS:
        raise CloudTrailError(
            "InvalidLookupAttributesException", f"Lookup attribute key {key!r} is not valid."
        )
    return str(key), str(attributes[0].get("AttributeValue", ""))


def lookup_events(events: EventLog, body: dict, region: str) -> dict[str, Any]:
    """Answer one accepted LookupEvents request (the rate limit is the caller's business)."""
    attribute = _validate(body)
    start, end = _time(body, "StartTime"), _time(body, "EndTime")
    if start and end and start > end:
        raise CloudTrailError("InvalidTimeRangeException", "Start time must be earlier than end time.")
    query = _query_hash(body, region)
    records = [r for r in events.visible() if r.get("awsRegion") == region]
    if start:
        records = [r for r in records if parse_event_time(r["eventTime"]) >= start]
    if end:
        records = [r for r in records if parse_event_time(r["eventTime"]) <= end]
    if attribute:
        key, value = attribute
        records = [r for r in records if value in _attribute_value(r, key)]
    records.sort(key=lambda r: (r["eventTime"], r["eventID"]), reverse=True)
    if body.get("NextToken"):
        last = _decode_token(str(body["NextToken"]), query)
        records = [r for r in records if (r["eventTime"], r["eventID"]) < last]
    page_size = int(body.get("MaxResults", MAX_PAGE))
    page = records[:page_size]
    answer: dict[str, Any] = {"Events": [_event(r) for r in page]}
    if len(records) > page_size:
        answer["NextToken"] = _encode_token(query, (page[-1]["eventTime"], page[-1]["eventID"]))
    return answer


class LookupEventsService:
    """LookupEvents with CloudTrail's per-region rate limit, counting every call."""

    def __init__(self, events: EventLog, faults: FaultConfig) -> None:
        self.events = events
        self.faults = faults
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, region: str) -> TokenBucket:
        with self._lock:
            return self._buckets.setdefault(region, TokenBucket())

    def handle(self, body: bytes, region: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for one request body."""
        accepted = self._bucket(region).take(self.faults.lookup_events_rate_per_s)
        self.faults.count_lookup(region, accepted=accepted)
        if not accepted:
            return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        if region in self.faults.lookup_refused_regions:
            message = f"User is not authorized to perform cloudtrail:LookupEvents in {region}"
            return 400, {"__type": "AccessDeniedException", "message": message}
        try:
            request = json.loads(body or b"{}")
            return 200, lookup_events(self.events, request, region)
        except CloudTrailError as error:
            return 400, {"__type": error.code, "message": error.message}
        except (ValueError, TypeError) as error:
            return 400, {"__type": "InvalidParameterException", "message": str(error)}
