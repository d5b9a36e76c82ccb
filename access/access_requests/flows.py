"""Use cases: ask for access, approve (N of M), deny, cancel, time out.

`prepare_request` does the AWS look-ups and all validation before anything is
written; the other flows take the caller's session and never commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access.access_requests import service
from access.access_requests.models import AccessRequest, Approval, RequestStatus
from access.audit.service import record
from access.aws.calls import aws_failures_as
from access.aws.ec2 import EndpointInfo, InstanceInfo, find_endpoint, find_instance
from access.config.model import OS_USER
from access.config.permissions import Actor, Verdict, can_approve, can_break_glass, can_request
from access.config.rules import EffectiveRule, Target, effective_rule
from access.durations import format_duration, parse_duration
from access.errors import Conflict, InvalidInput, NotFound, NotPermitted
from access.grants import service as grant_service
from access.grants.flows import build_grant, extend_in_place
from access.grants.models import Grant
from access.grants.policy import check_policy_fits, grant_policy
from access.outbox.service import enqueue
from access.principals.service import resolve_principal
from access.runtime import Runtime, new_id

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


@dataclass(frozen=True)
class ApprovalOutcome:
    request: AccessRequest
    approved: bool  # this call completed the approval
    grant_id: str | None
    approvals: list[str]


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
    # The policy must fit on its own before anyone is asked to approve it.
    check_policy_fits(
        grant_policy(build_scope_for(instance, endpoint, port, os_user, now, now + duration, rule)),
        principal,
    )
    report = _preflight(rt, instance.instance_id, instance.region, port, os_user, principal, rule)
    return PreparedRequest(inp, instance, endpoint, rule, principal, duration, port, os_user, report)


def _preflight(
    rt: Runtime,
    instance_id: str,
    region: str,
    port: int,
    os_user: str,
    principal: str,
    rule: EffectiveRule,
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
            overshoot_s=int(rule.max_tunnel_overshoot.total_seconds()),
        )
    except Exception as exc:
        log.warning("pre-flight for %s failed: %s", instance_id, exc)
        return None
    return report.to_dict()


def build_scope_for(instance, endpoint, port, os_user, starts_at, expires_at, rule):  # type: ignore[no-untyped-def]
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
    )


def create_request(
    session: Session, rt: Runtime, prepared: PreparedRequest, *, extends: Grant | None = None
) -> ApprovalOutcome:
    """Write the pending request (and approve it at once for auto-approve or break-glass)."""
    now = rt.clock.now()
    inp, instance, rule = prepared.input, prepared.instance, prepared.rule
    if extends is None:
        existing = service.pending_for_requester(session, inp.requester.user_id, instance.instance_id)
        if existing is not None:
            raise Conflict(f"you already have a pending request {existing.id} for {instance.instance_id}")
        active = grant_service.live_grant_for(session, inp.requester.user_id, instance.instance_id)
        if active is not None:
            raise Conflict(
                f"you already have grant {active.id} on {instance.instance_id}; "
                f"use `/eice extend {active.id} <duration>` for more time"
            )
    request = AccessRequest(
        id=new_id("r"),
        status=RequestStatus.PENDING,
        requester_id=inp.requester.user_id,
        requester_name=inp.requester_name,
        principal_arn=prepared.principal_arn,
        account_id=instance.account_id,
        region=instance.region,
        instance_id=instance.instance_id,
        instance_name=instance.name,
        instance_tags=instance.tags,
        vpc_id=instance.vpc_id,
        subnet_id=instance.subnet_id,
        endpoint_id=prepared.endpoint.endpoint_id,
        endpoint_dns=prepared.endpoint.dns_name,
        private_ip=instance.private_ip,
        port=prepared.port,
        os_user=prepared.os_user,
        duration_s=int(prepared.duration.total_seconds()),
        reason=inp.reason,
        rule_name=rule.name,
        approvers=list(rule.approvers),
        approvals_required=rule.approvals_required,
        approvals_count=0,
        allow_self_approval=rule.allow_self_approval,
        auto_approved=False,
        break_glass=inp.break_glass,
        approvals_channel=rule.approvals_channel or "",
        created_at=now,
        approval_deadline=now + rule.approval_timeout,
        extends_grant_id=extends.id if extends else None,
        preflight=prepared.preflight,
    )
    session.add(request)
    session.flush()
    record(
        session,
        "request.extension" if extends else "request.created",
        actor=inp.requester.user_id,
        at=now,
        request_id=request.id,
        grant_id=extends.id if extends else None,
        instance_id=instance.instance_id,
        detail={
            "duration_s": request.duration_s,
            "port": request.port,
            "os_user": request.os_user,
            "reason": request.reason,
            "rule": rule.name,
            "principal": request.principal_arn,
            "break_glass": inp.break_glass,
        },
    )
    if rule.auto_approve or inp.break_glass:
        kind = "break_glass" if inp.break_glass else "auto"
        return _complete_approval(session, rt, request, approver=kind, now=now, approvals=[kind])
    enqueue(session, "request.created", now=now, request_id=request.id)
    return ApprovalOutcome(request, False, None, [])


def current_rule(rt: Runtime, request: AccessRequest) -> EffectiveRule:
    """The rule as the config says *now* (approver rights are re-checked at click time)."""
    return effective_rule(rt.config, Target(request.instance_tags, request.region, request.account_id))


def _decision_rights(
    session: Session, rt: Runtime, request_id: str, actor: Actor, *, now: datetime, deny: bool
) -> tuple[AccessRequest, Verdict]:
    """The request and whether `actor` may decide it, by the config as it is now (click time).

    Anyone who may approve may also deny, even their own request.
    """
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound(f"no request {request_id}")
    rule = current_rule(rt, request)
    verdict = can_approve(
        actor,
        requester_id=request.requester_id,
        approvers=rule.approvers,
        allow_self_approval=deny or rule.allow_self_approval,
        status=request.status,
        deadline=request.approval_deadline,
        now=now,
    )
    return request, verdict


def approve(session: Session, rt: Runtime, request_id: str, actor: Actor) -> ApprovalOutcome:
    """Record one approval; the one that reaches N approves the request and creates its grant.

    Raises:
        NotFound, NotPermitted, Conflict: with a reason fit for the approver.
    """
    now = rt.clock.now()
    request, verdict = _decision_rights(session, rt, request_id, actor, now=now, deny=False)
    if not verdict:
        if request.status != RequestStatus.PENDING:
            by = (
                f" by <@{request.decided_by}>" if request.decided_by and request.decided_by[0] in "UW" else ""
            )
            raise Conflict(f"already {request.status}{by}")
        raise NotPermitted(verdict.reason)
    try:
        with session.begin_nested():
            session.add(Approval(request_id=request.id, approver_id=actor.user_id, created_at=now))
    except IntegrityError:
        raise Conflict("you have already approved this request") from None
    count = service.count_approval(session, request.id)
    if count is None:
        session.refresh(request)
        raise Conflict(f"already {request.status}")
    record(
        session,
        "approval.given",
        actor=actor.user_id,
        at=now,
        request_id=request.id,
        instance_id=request.instance_id,
        detail={"count": count, "required": request.approvals_required},
    )
    approvals = service.approvers_of(session, request.id)
    if count < request.approvals_required:
        enqueue(
            session,
            "request.approval",
            now=now,
            request_id=request.id,
            payload={"by": actor.user_id},
        )
        session.refresh(request)
        return ApprovalOutcome(request, False, None, approvals)
    return _complete_approval(session, rt, request, approver=actor.user_id, now=now, approvals=approvals)


def _complete_approval(
    session: Session,
    rt: Runtime,
    request: AccessRequest,
    *,
    approver: str,
    now: datetime,
    approvals: list[str],
) -> ApprovalOutcome:
    won = service.transition(
        session,
        request.id,
        frm=RequestStatus.PENDING,
        to=RequestStatus.APPROVED,
        decided_at=now,
        decided_by=approver,
        auto_approved=approver in ("auto", "break_glass"),
    )
    session.refresh(request)
    if not won:
        raise Conflict(f"already {request.status}")
    record(
        session,
        "request.approved",
        actor=approver,
        at=now,
        request_id=request.id,
        instance_id=request.instance_id,
        detail={"approvers": approvals, "break_glass": request.break_glass},
    )
    if request.extends_grant_id:
        grant = extend_in_place(session, rt, request, now=now)
    else:
        grant = build_grant(session, rt, request, now=now)
    enqueue(session, "request.approved", now=now, request_id=request.id, grant_id=grant.id)
    if request.break_glass:
        record(
            session,
            "break_glass.used",
            actor=request.requester_id,
            at=now,
            request_id=request.id,
            grant_id=grant.id,
            instance_id=request.instance_id,
            detail={"reason": request.reason, "needs_review": True},
        )
        enqueue(session, "break_glass", now=now, request_id=request.id, grant_id=grant.id)
    return ApprovalOutcome(request, True, grant.id, approvals)


def deny(session: Session, rt: Runtime, request_id: str, actor: Actor, reason: str = "") -> AccessRequest:
    """An approver says no; the request ends."""
    now = rt.clock.now()
    request, verdict = _decision_rights(session, rt, request_id, actor, now=now, deny=True)
    if not verdict and actor.user_id != request.requester_id:
        if request.status != RequestStatus.PENDING:
            raise Conflict(
                f"already {request.status}" + (f" by <@{request.decided_by}>" if request.decided_by else "")
            )
        raise NotPermitted(verdict.reason)
    if not service.transition(
        session,
        request.id,
        frm=RequestStatus.PENDING,
        to=RequestStatus.DENIED,
        decided_at=now,
        decided_by=actor.user_id,
        decision_note=reason[:500],
    ):
        session.refresh(request)
        raise Conflict(f"already {request.status}")
    record(
        session,
        "request.denied",
        actor=actor.user_id,
        at=now,
        request_id=request.id,
        instance_id=request.instance_id,
        detail={"reason": reason[:500]},
    )
    enqueue(session, "request.denied", now=now, request_id=request.id)
    session.refresh(request)
    return request


def cancel(session: Session, rt: Runtime, request_id: str, actor: Actor) -> AccessRequest:
    """The requester withdraws a pending request."""
    now = rt.clock.now()
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound(f"no request {request_id}")
    if actor.user_id != request.requester_id:
        raise NotPermitted("only the requester can cancel a request")
    if not service.transition(
        session,
        request.id,
        frm=RequestStatus.PENDING,
        to=RequestStatus.CANCELLED,
        decided_at=now,
        decided_by=actor.user_id,
    ):
        session.refresh(request)
        raise Conflict(f"already {request.status}")
    record(
        session,
        "request.cancelled",
        actor=actor.user_id,
        at=now,
        request_id=request.id,
        instance_id=request.instance_id,
    )
    enqueue(session, "request.cancelled", now=now, request_id=request.id)
    session.refresh(request)
    return request


def expire_timed_out(session: Session, rt: Runtime) -> list[str]:
    """Pending requests past their approval deadline become expired (the requester is told)."""
    now = rt.clock.now()
    expired = []
    for request_id in service.timed_out(session, now):
        if service.transition(
            session,
            request_id,
            frm=RequestStatus.PENDING,
            to=RequestStatus.EXPIRED,
            decided_at=now,
            decided_by="timeout",
        ):
            record(session, "request.expired", actor="eice", at=now, request_id=request_id)
            enqueue(session, "request.expired", now=now, request_id=request_id)
            expired.append(request_id)
    return expired
