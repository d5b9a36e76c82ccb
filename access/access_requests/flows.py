"""Use cases: write a request, approve it (N of M), deny it.

`prepare_request` (`access.access_requests.prepare`) does the AWS look-ups and all
validation before anything is written; these flows take the caller's session and
never commit. Cancelling lives in `access.access_requests.withdraw`, time-outs in
`access.access_requests.timeouts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access.access_requests import service
from access.access_requests.decide import end_pending
from access.access_requests.models import AccessRequest, Approval, RequestStatus
from access.access_requests.prepare import PreparedRequest
from access.audit.service import record
from access.config.permissions import Actor, Verdict, can_approve
from access.config.rules import EffectiveRule, Target, effective_rule
from access.errors import Conflict, NotFound, NotPermitted
from access.grants import service as grant_service
from access.grants.flows import build_grant, extend_in_place
from access.grants.models import Grant
from access.ids import new_id
from access.outbox.service import enqueue
from access.runtime import Runtime


@dataclass(frozen=True)
class ApprovalOutcome:
    request: AccessRequest
    approved: bool  # this call completed the approval
    grant_id: str | None
    approvals: list[str]


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
    return end_pending(
        session,
        request,
        to=RequestStatus.DENIED,
        event="request.denied",
        actor=actor.user_id,
        now=now,
        detail={"reason": reason[:500]},
        decision_note=reason[:500],
    )
