"""The grant's IAM policy document: one instance, one port, one OS user, one time window.

`aws:CurrentTime` makes the policy fail closed at expiry even if the bot is down.
An open tunnel survives its policy, though, until its `maxTunnelDuration`; so the
last hour of the window is cut into slices of at most `overshoot` seconds, and
from a slice's start `s` on, `maxTunnelDuration > expires - s` is denied. A tunnel
opened at `t` in that slice therefore ends by `t + expires - s < expires + overshoot`.
Before the last hour any duration is safe (EICE caps tunnels at 3600 s).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from access.clock import as_utc, iso
from access.errors import InvalidInput, PolicyTooLarge
from access.ids import id_pattern

MAX_TUNNEL_S = 3600
ROLE_INLINE_LIMIT = 10_240
USER_INLINE_LIMIT = 2_048
OPEN_TUNNEL = "ec2-instance-connect:OpenTunnel"
SEND_SSH_PUBLIC_KEY = "ec2-instance-connect:SendSSHPublicKey"
GRANT_POLICY_PREFIX = "eice-grant-"
DEPLOYMENT = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?$")  # `[aws] deployment` in eice.toml
OWNER_SID = "EiceGrantOf"  # + the installation ID: the Sid of a grant policy's first statement
OWNER = re.compile(r"^[A-Za-z0-9]{1,32}$")  # a Sid may hold only letters and digits


@dataclass(frozen=True)
class GrantScope:
    """Everything the policy pins down."""

    account_id: str
    region: str
    instance_id: str
    endpoint_id: str
    private_ip: str
    port: int
    os_user: str
    starts_at: datetime
    expires_at: datetime
    overshoot_s: int = 300
    allow_describe: bool = False
    owner: str = ""  # the installation ID (`access.installation`); "" writes no owner Sid

    @property
    def endpoint_arn(self) -> str:
        return f"arn:aws:ec2:{self.region}:{self.account_id}:instance-connect-endpoint/{self.endpoint_id}"

    @property
    def instance_arn(self) -> str:
        return f"arn:aws:ec2:{self.region}:{self.account_id}:instance/{self.instance_id}"


def policy_name(grant_id: str, deployment: str = "") -> str:
    """The fixed name that makes PutRolePolicy/DeleteRolePolicy idempotent:
    `eice-grant-<grant id>`, or `eice-grant-<deployment>-<grant id>` for a named deployment."""
    return f"{GRANT_POLICY_PREFIX}{deployment}{'-' if deployment else ''}{grant_id}"


def is_own_policy_name(name: str, deployment: str = "") -> bool:
    """Whether `name` is one this deployment gives its grant policies (and no other
    deployment could have): the reconciler and the audit collector leave the rest alone."""
    return re.fullmatch(re.escape(policy_name("", deployment)) + id_pattern("g"), name) is not None


def truncate_to_second(value: datetime) -> datetime:
    return as_utc(value).replace(microsecond=0)


def tunnel_slices(
    starts_at: datetime, expires_at: datetime, overshoot_s: int
) -> list[tuple[datetime, datetime, int]]:
    """(slice start, slice end, max tunnel seconds) covering [starts_at, expires_at).

    Times are whole seconds; the first slice may be long (any duration is safe
    there), the last hour is cut into slices no longer than `overshoot_s`.
    """
    start, end = truncate_to_second(starts_at), truncate_to_second(expires_at)
    if overshoot_s < 1:
        raise InvalidInput("overshoot must be at least 1 second")
    if end <= start:
        raise InvalidInput("the grant must end after it starts")
    slices: list[tuple[datetime, datetime, int]] = []
    last_hour = end - timedelta(seconds=MAX_TUNNEL_S)
    cursor = start
    if cursor < last_hour:
        slices.append((cursor, last_hour, MAX_TUNNEL_S))
        cursor = last_hour
    step = timedelta(seconds=min(overshoot_s, MAX_TUNNEL_S))
    # Align slice edges on the expiry so each slice's bound is a round number.
    while cursor < end:
        remaining = end - cursor
        first = remaining % step or step
        nxt = cursor + first
        slices.append((cursor, nxt, int((end - cursor).total_seconds())))
        cursor = nxt
    return slices


def grant_policy(scope: GrantScope) -> dict[str, Any]:
    """The policy document for a grant (a pure function of its scope).

    One Allow for the whole window, with `maxTunnelDuration` bounded by the window's
    length; then, for each slice of the last hour, a Deny of longer tunnels to this
    instance's IP once the slice has begun. Deny statements only ever take access
    away, so they are safe to carry a little longer than the Allow. The first statement's
    Sid names the installation that wrote it (`scope.owner`), for the reconciler.
    """
    if not 1 <= scope.port <= 65535:
        raise InvalidInput(f"port {scope.port} is not between 1 and 65535")
    if scope.owner and not OWNER.match(scope.owner):
        raise InvalidInput(f"owner {scope.owner[:40]!r} must be 1-32 letters or digits (it goes in a Sid)")
    start, end = truncate_to_second(scope.starts_at), truncate_to_second(scope.expires_at)
    slices = tunnel_slices(start, end, scope.overshoot_s)
    window = {
        "DateGreaterThanEquals": {"aws:CurrentTime": iso(start)},
        "DateLessThan": {"aws:CurrentTime": iso(end)},
    }
    ip = {"ec2-instance-connect:privateIpAddress": f"{scope.private_ip}/32"}
    owner = {"Sid": OWNER_SID + scope.owner} if scope.owner else {}
    statements: list[dict[str, Any]] = [
        {
            **owner,
            "Effect": "Allow",
            "Action": OPEN_TUNNEL,
            "Resource": scope.endpoint_arn,
            "Condition": {
                "NumericEquals": {"ec2-instance-connect:remotePort": str(scope.port)},
                "IpAddress": ip,
                "NumericLessThanEquals": {"ec2-instance-connect:maxTunnelDuration": str(slices[0][2])},
                **window,
            },
        }
    ]
    for slice_start, _slice_end, max_s in slices[1:]:
        statements.append(
            {
                "Effect": "Deny",
                "Action": OPEN_TUNNEL,
                "Resource": scope.endpoint_arn,
                "Condition": {
                    "IpAddress": ip,
                    "NumericGreaterThan": {"ec2-instance-connect:maxTunnelDuration": str(max_s)},
                    "DateGreaterThanEquals": {"aws:CurrentTime": iso(slice_start)},
                },
            }
        )
    statements.append(
        {
            "Effect": "Allow",
            "Action": SEND_SSH_PUBLIC_KEY,
            "Resource": scope.instance_arn,
            "Condition": {"StringEquals": {"ec2:osuser": scope.os_user}, **window},
        }
    )
    if scope.allow_describe:
        statements.append(
            {
                "Effect": "Allow",
                "Action": ["ec2:DescribeInstances", "ec2:DescribeInstanceConnectEndpoints"],
                "Resource": "*",
                "Condition": window,
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def policy_owner(document: dict[str, Any]) -> str | None:
    """The installation that wrote a grant policy (its first statement's owner Sid), or None
    for a document without one (written before installations had IDs, or by hand)."""
    statements = document.get("Statement")
    first = statements[0] if isinstance(statements, list) and statements else statements
    sid = first.get("Sid") if isinstance(first, dict) else None
    if isinstance(sid, str) and sid.startswith(OWNER_SID) and OWNER.match(sid[len(OWNER_SID) :]):
        return sid[len(OWNER_SID) :]
    return None


def policy_size(document: dict[str, Any]) -> int:
    """Characters IAM counts against the inline-policy quota (whitespace is not counted)."""
    return len(json.dumps(document, separators=(",", ":")))


def inline_limit(principal_arn: str) -> int:
    return USER_INLINE_LIMIT if ":user/" in principal_arn else ROLE_INLINE_LIMIT


def check_policy_fits(document: dict[str, Any], principal_arn: str, *, used: int = 0) -> int:
    """Raise PolicyTooLarge unless `document` fits beside `used` characters of other inline policies.

    Returns the document's size.
    """
    size = policy_size(document)
    limit = inline_limit(principal_arn)
    kind = "user" if ":user/" in principal_arn else "role"
    if size + used > limit:
        hint = (
            "a larger overshoot, a shorter grant, or a role instead of a user"
            if kind == "user"
            else "fewer concurrent grants on this role, or a larger overshoot"
        )
        raise PolicyTooLarge(
            f"the grant policy is {size:,} characters and the {kind} already has {used:,}; "
            f"IAM allows {limit:,} for all inline policies of a {kind}. Try {hint}."
        )
    return size


def max_tunnel_duration_at(scope: GrantScope, at: datetime) -> int:
    """The largest maxTunnelDuration the policy allows for a tunnel opened at `at` (0: none)."""
    at = as_utc(at)
    for s, e, max_s in tunnel_slices(scope.starts_at, scope.expires_at, scope.overshoot_s):
        if s <= at < e:
            return max_s
    return 0
