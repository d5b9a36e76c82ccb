"""Reading CloudTrail records and tying an EICE event to the grant that allowed it (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from access.clock import as_utc, parse_iso
from access.grants.models import Grant

# A tunnel opened a little before the grant's recorded start (clock skew) is still its own.
EARLY_SLACK = timedelta(minutes=1)


@dataclass
class ParsedEvent:
    """The fields of one CloudTrail record this project reads, whatever its vintage."""

    event_id: str
    event_name: str
    event_source: str
    event_time: datetime
    region: str
    account_id: str
    principal_arn: str | None
    session_arn: str | None
    source_ip: str | None
    user_agent: str | None
    error_code: str | None
    error_message: str | None
    request_parameters: Any
    instance_id: str | None
    endpoint_id: str | None
    private_ip: str | None
    port: int | None
    os_user: str | None
    aws_request_id: str | None
    policy_name: str | None
    raw: dict[str, Any]


def principal_of(identity: dict[str, Any]) -> tuple[str | None, str | None]:
    """(principal ARN, session ARN): for an assumed role, the role behind the session."""
    arn = identity.get("arn")
    if identity.get("type") == "AssumedRole":
        issuer = (identity.get("sessionContext") or {}).get("sessionIssuer") or {}
        return issuer.get("arn") or arn, arn
    return arn, arn


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _event_time(event: dict[str, Any], record: dict[str, Any]) -> datetime:
    if record.get("eventTime"):
        return parse_iso(str(record["eventTime"]))
    value = event.get("EventTime")
    if isinstance(value, datetime):
        return as_utc(value)
    return datetime.fromtimestamp(float(value or 0), UTC)


def parse_event(event: dict[str, Any]) -> ParsedEvent:
    """Parse one LookupEvents entry (its `CloudTrailEvent` JSON carries the record)."""
    raw = event.get("CloudTrailEvent")
    record: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    params = record.get("requestParameters") or {}
    if not isinstance(params, dict):
        params = {}
    principal, session = principal_of(record.get("userIdentity") or {})
    return ParsedEvent(
        event_id=str(record.get("eventID") or event.get("EventId")),
        event_name=str(record.get("eventName") or event.get("EventName") or ""),
        event_source=str(record.get("eventSource") or event.get("EventSource") or ""),
        event_time=_event_time(event, record),
        region=str(record.get("awsRegion") or ""),
        account_id=str(
            record.get("recipientAccountId") or (record.get("userIdentity") or {}).get("accountId") or ""
        )[:12],
        principal_arn=principal,
        session_arn=session,
        source_ip=record.get("sourceIPAddress"),
        user_agent=record.get("userAgent"),
        error_code=record.get("errorCode"),
        error_message=record.get("errorMessage"),
        request_parameters=record.get("requestParameters"),
        instance_id=params.get("instanceId"),
        endpoint_id=params.get("instanceConnectEndpointId"),
        private_ip=params.get("privateIpAddress"),
        port=_int(params.get("remotePort")),
        # Current records say instanceOSUser; an old AWS example says osUser.
        os_user=params.get("instanceOSUser") or params.get("osUser"),
        aws_request_id=record.get("requestID"),
        policy_name=params.get("policyName"),
        raw=record,
    )


def targets_grant(event: ParsedEvent, grant: Grant) -> bool:
    """Did the event aim at what the grant allows (endpoint+IP+port, or instance+OS user)?"""
    if event.region and event.region != grant.region:
        return False
    if event.event_name == "OpenTunnel":
        return (
            event.endpoint_id == grant.endpoint_id
            and event.private_ip == grant.private_ip
            and event.port == grant.port
        )
    if event.event_name == "SendSSHPublicKey":
        return event.instance_id == grant.instance_id and event.os_user == grant.os_user
    return False


def beside_grant(event: ParsedEvent, grant: Grant) -> bool:
    """Did the event aim at the grant's endpoint or instance, but at something the grant does
    not allow there (another IP or port, another OS user)?"""
    if (event.region and event.region != grant.region) or targets_grant(event, grant):
        return False
    if event.event_name == "OpenTunnel":
        return event.endpoint_id == grant.endpoint_id
    if event.event_name == "SendSSHPublicKey":
        return event.instance_id == grant.instance_id
    return False


def grant_window(grant: Grant) -> tuple[datetime, datetime]:
    """From a minute before the start to the end (expiry or revocation) plus the overshoot."""
    end = grant.expires_at
    if grant.revoked_at is not None and grant.revoked_at > end:
        end = grant.revoked_at
    return grant.starts_at - EARLY_SLACK, end + timedelta(seconds=grant.overshoot_s)


def _late_flag(event: ParsedEvent, grant: Grant) -> str | None:
    """ "after_expiry" or "after_revoke" for a call made after the grant ended, refused or not:
    one that got through then (IAM takes a few seconds to drop a deleted policy everywhere)
    is the one most worth a look. CloudTrail's times are whole seconds, so a call allowed in
    the second of the revocation is not counted as after it; a call refused in the second of
    the expiry is (the policy allows only times before it: `DateLessThan`)."""
    expired = (
        event.event_time >= grant.expires_at if event.error_code else event.event_time > grant.expires_at
    )
    if expired:
        return "after_expiry"
    revoked = grant.revoked_at
    if revoked is None or revoked >= grant.expires_at:
        return None
    after = event.event_time >= revoked if event.error_code else event.event_time > revoked
    return "after_revoke" if after else None


def match_grant(
    event: ParsedEvent, grants: list[Grant], *, grace: timedelta
) -> tuple[Grant, str | None] | None:
    """The grant an event belongs to, and a flag when it deserves a second look.

    Inside the window any attempt at what the grant allows matches; one after an early
    revocation (or after the expiry, inside the overshoot) is flagged "after_revoke" (or
    "after_expiry"), whether or not it was refused. A refused attempt inside the window at
    the grant's endpoint or instance but outside its scope (another port, IP or OS user)
    is the holder probing beyond the grant: kept with it, flagged "outside_grant". After
    the window only a refused attempt matches (someone trying an expired grant, flagged
    "after_expiry"), up to `grace` later. Anything that got through outside what a grant
    allows means access from elsewhere, so it stays out-of-band.
    """
    inside: list[Grant] = []
    beside: list[Grant] = []
    late: list[Grant] = []
    for grant in grants:
        if grant.principal_arn != event.principal_arn:
            continue
        start, end = grant_window(grant)
        if targets_grant(event, grant):
            if start <= event.event_time <= end:
                inside.append(grant)
            elif event.error_code and end < event.event_time <= end + grace:
                late.append(grant)
        elif event.error_code and start <= event.event_time <= end and beside_grant(event, grant):
            beside.append(grant)
    if inside:
        grant = max(inside, key=lambda g: g.starts_at)
        return grant, _late_flag(event, grant)
    if beside:
        return max(beside, key=lambda g: g.starts_at), "outside_grant"
    if late:
        return max(late, key=lambda g: g.starts_at), "after_expiry"
    return None
