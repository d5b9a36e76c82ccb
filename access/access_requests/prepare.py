"""Preparing a request: validate what a person typed, do the AWS look-ups and the
pre-flight, and resolve the principal, all before anything is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from access.aws.calls import aws_failures_as
from access.aws.ec2 import EndpointInfo, InstanceInfo, find_endpoint, find_instance
from access.config.model import OS_USER
from access.config.permissions import Actor, can_break_glass, can_request
from access.config.rules import EffectiveRule, Target, effective_rule
from access.durations import format_duration, parse_duration
from access.errors import InvalidInput, NotFound, NotPermitted
from access.grants.policy import check_policy_fits, grant_policy
from access.principals.service import resolve_principal
from access.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestInput:
    """What a person typed, after the Slack layer split it into fields."""

    requester: Actor
    instance_ref: str
    duration: str
    reason: str = ""
    port: int | None = None
    os_user: str | None = None
    break_glass: bool = False
    requester_name: str = ""
    email: str | None = None
    replaces_policy: str | None = None  # an extension: the grant policy its new version replaces


@dataclass(frozen=True)
class PreparedRequest:
    """A request that passed every check and is ready to be written."""

    input: RequestInput
    instance: InstanceInfo
    endpoint: EndpointInfo
    rule: EffectiveRule
    principal_arn: str
    duration: timedelta
    port: int
    os_user: str
    preflight: dict[str, Any] | None = None


def prepare_request(rt: Runtime, inp: RequestInput) -> PreparedRequest:
    """Validate input, find the instance and endpoint, resolve the principal. Writes nothing.

    Raises:
        AccessError: any reason the request cannot be made, in words for the requester.
    """
    with aws_failures_as("a lookup for this request"):
        return _prepare(rt, inp)


def _prepare(rt: Runtime, inp: RequestInput) -> PreparedRequest:
    duration = parse_duration(inp.duration)
    if inp.port is not None and not 1 <= inp.port <= 65535:
        raise InvalidInput(f"port {inp.port} is not between 1 and 65535")
    if inp.os_user is not None and not OS_USER.match(inp.os_user):
        raise InvalidInput(f"{inp.os_user[:40]!r} is not a valid OS user name")
    if len(inp.reason) > 1000:
        raise InvalidInput("the reason is longer than 1,000 characters")
    instance = find_instance(rt.clients, rt.regions, inp.instance_ref)
    if instance.state != "running":
        raise InvalidInput(f"{instance.instance_id} is {instance.state}, not running")
    if not instance.private_ip:
        raise InvalidInput(f"{instance.instance_id} has no private IPv4 address")
    rule = effective_rule(rt.config, Target(instance.tags, instance.region, instance.account_id))
    verdict = can_request(inp.requester, rule.requesters)
    if not verdict:
        raise NotPermitted(verdict.reason)
    limit = rule.max_duration
    if inp.break_glass:
        bg = can_break_glass(inp.requester, rt.config.break_glass)
        if not bg:
            raise NotPermitted(bg.reason)
        limit = min(limit, rt.config.break_glass.max_duration)
    if duration > limit:
        raise InvalidInput(
            f"{format_duration(duration)} is longer than the {format_duration(limit)} allowed for "
            f"{instance.name or instance.instance_id}"
        )
    endpoint = find_endpoint(rt.clients, instance)
    with rt.db.transaction() as session:
        principal = resolve_principal(
            session,
            rt.config,
            user_id=inp.requester.user_id,
            email=inp.email,
            account_id=instance.account_id,
        )
    if not rt.iam.exists(principal):
        raise NotFound(f"your IAM principal {principal} does not exist in account {instance.account_id}")
    port = inp.port or rule.port
    os_user = inp.os_user or rule.os_user
    now = rt.clock.now()
    # The policy must fit beside the principal's other inline policies before anyone is asked
    # to approve it (IAM counts them together); an extension replaces its grant's own policy.
    owner = rt.installation_id()
    scope = build_scope_for(instance, endpoint, port, os_user, now, now + duration, rule, owner)
    used = rt.iam.inline_size_used(principal, excluding=inp.replaces_policy)
    check_policy_fits(grant_policy(scope), principal, used=used)
    report = _preflight(rt, instance.instance_id, instance.region, port, os_user, principal, rule, used)
    return PreparedRequest(inp, instance, endpoint, rule, principal, duration, port, os_user, report)


def _preflight(
    rt: Runtime,
    instance_id: str,
    region: str,
    port: int,
    os_user: str,
    principal: str,
    rule: EffectiveRule,
    inline_used: int,
) -> dict[str, Any] | None:
    """The reachability check shown on the approval card; never blocks the request itself."""
    from access.preflight import run_preflight

    try:
        report = run_preflight(
            rt.clients,
            [region],
            instance_id,
            port=port,
            os_user=os_user,
            principal_arn=principal,
            iam=rt.iam,
            inline_used=inline_used,
            overshoot_s=int(rule.max_tunnel_overshoot.total_seconds()),
            allow_describe=rule.allow_describe,
        )
    except Exception as exc:
        log.warning("pre-flight for %s failed: %s", instance_id, exc)
        return None
    return report.to_dict()


def build_scope_for(instance, endpoint, port, os_user, starts_at, expires_at, rule, owner=""):  # type: ignore[no-untyped-def]
    from access.grants.policy import GrantScope

    return GrantScope(
        account_id=instance.account_id,
        region=instance.region,
        instance_id=instance.instance_id,
        endpoint_id=endpoint.endpoint_id,
        private_ip=instance.private_ip,
        port=port,
        os_user=os_user,
        starts_at=starts_at,
        expires_at=expires_at,
        overshoot_s=int(rule.max_tunnel_overshoot.total_seconds()),
        allow_describe=rule.allow_describe,
        owner=owner,
    )
