"""Grant use cases: create (row first), apply (PutRolePolicy), extend.

Crash-safe ordering: the row with its policy name and document is committed before
any IAM call; IAM calls are idempotent; the final state is a conditional UPDATE.
A crash anywhere leaves a row the reaper (stale claim) or reconciler finishes.
Revocation (DeleteRolePolicy) lives in `access.grants.revoke`.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.audit.service import record
from access.aws.calls import error_code
from access.config.rules import Target, effective_rule
from access.durations import format_duration
from access.errors import Conflict, NotFound
from access.failpoints import failpoint
from access.grants import service
from access.grants.models import Grant, GrantStatus
from access.grants.policy import (
    GrantScope,
    check_policy_fits,
    grant_policy,
    policy_name,
    policy_size,
    truncate_to_second,
)
from access.ids import new_id
from access.outbox.service import enqueue

if TYPE_CHECKING:
    from access.access_requests.models import AccessRequest
    from access.runtime import Runtime

log = logging.getLogger(__name__)
APPLY_FAILED = "apply failed"
# IAM answers that will not change by retrying: the grant fails (applying) or is flagged (revoking).
PERMANENT_PUT_ERRORS = frozenset(
    {
        "NoSuchEntity",
        "MalformedPolicyDocument",
        "LimitExceeded",
        "AccessDenied",
        "UnmodifiableEntity",
    }
)


def scope_of(grant: Grant, owner: str = "") -> GrantScope:
    """What `grant` pins down; `owner` (the installation ID) goes into its policy."""
    return GrantScope(
        account_id=grant.account_id,
        region=grant.region,
        instance_id=grant.instance_id,
        endpoint_id=grant.endpoint_id,
        private_ip=grant.private_ip,
        port=grant.port,
        os_user=grant.os_user,
        starts_at=grant.starts_at,
        expires_at=grant.expires_at,
        overshoot_s=grant.overshoot_s,
        allow_describe=grant.allow_describe,
        owner=owner,
    )


def live_policies_size(session: Session, grant: Grant) -> int:
    """Characters of this bot's other live grant policies on `grant`'s principal.

    The request was checked against the principal's inline policies when it was asked for;
    grants approved since (several requests pending at once) are counted here, at approval,
    so that IAM's shared quota is not found full only at `PutRolePolicy`.
    """
    documents = session.scalars(
        select(Grant.policy_document).where(
            Grant.principal_arn == grant.principal_arn,
            Grant.status.in_(service.LIVE),
            Grant.id != grant.id,
        )
    )
    return sum(policy_size(document) for document in documents)


def build_grant(session: Session, rt: Runtime, request: AccessRequest, *, now: datetime) -> Grant:
    """Insert the grant row (status applying, claimed by this process) for an approved request."""
    rule = effective_rule(rt.config, Target(request.instance_tags, request.region, request.account_id))
    grant_id = new_id("g")
    starts = truncate_to_second(now)
    grant = Grant(
        id=grant_id,
        request_id=request.id,
        status=GrantStatus.APPLYING,
        requester_id=request.requester_id,
        principal_arn=request.principal_arn,
        policy_name=policy_name(grant_id, rt.config.aws.deployment),
        policy_document={},
        account_id=request.account_id,
        region=request.region,
        instance_id=request.instance_id,
        endpoint_id=request.endpoint_id,
        private_ip=request.private_ip,
        port=request.port,
        os_user=request.os_user,
        overshoot_s=int(rule.max_tunnel_overshoot.total_seconds()),
        allow_describe=rule.allow_describe,
        break_glass=request.break_glass,
        created_at=now,
        starts_at=starts,
        expires_at=starts + timedelta(seconds=request.duration_s),
        claimed_by=rt.worker_id,
        claim_expires_at=now + timedelta(seconds=rt.claim_lease_s),
        attempts=0,
        policy_version=1,
        applied_version=0,
    )
    grant.policy_document = grant_policy(scope_of(grant, rt.installation_id(session)))
    check_policy_fits(grant.policy_document, grant.principal_arn, used=live_policies_size(session, grant))
    session.add(grant)
    session.flush()
    record(
        session,
        "grant.created",
        actor="eice",
        at=now,
        request_id=request.id,
        grant_id=grant.id,
        instance_id=grant.instance_id,
        detail={
            "policy_name": grant.policy_name,
            "principal": grant.principal_arn,
            "expires_at": grant.expires_at.isoformat(),
        },
    )
    return grant


def extend_in_place(session: Session, rt: Runtime, request: AccessRequest, *, now: datetime) -> Grant:
    """An approved extension: a later expiry and a new document, re-put under the same name."""
    # Locked: two extensions approved at once must each see the other's new expiry.
    grant_id = request.extends_grant_id
    grant = session.get(Grant, grant_id, with_for_update=True) if grant_id else None
    if grant is None or grant.status not in service.LIVE or grant.expires_at <= now:
        raise Conflict("the grant to extend has already ended; request access again")
    new_expiry = grant.expires_at + timedelta(seconds=request.duration_s)
    # Checked when the extension was asked for, and again now: two asked for at once (two
    # clicks, two commands) each fit alone, but not one after the other.
    rule = effective_rule(rt.config, Target(request.instance_tags, request.region, request.account_id))
    if new_expiry - grant.starts_at > rule.max_duration:
        raise Conflict(
            f"approving would hold grant {grant.id} for {format_duration(new_expiry - grant.starts_at)} in "
            f"all (it has been extended since this was asked); the rule allows "
            f"{format_duration(rule.max_duration)}: deny this one"
        )
    scope = scope_of(grant, rt.installation_id(session))
    document = grant_policy(GrantScope(**{**scope.__dict__, "expires_at": new_expiry}))
    check_policy_fits(document, grant.principal_arn, used=live_policies_size(session, grant))
    won = service.transition(
        session,
        grant.id,
        frm=service.LIVE,
        to=grant.status,
        expires_at=new_expiry,
        policy_document=document,
        policy_version=grant.policy_version + 1,
        extensions=grant.extensions + 1,
        reminded_at=None,
        claimed_by=rt.worker_id,
        claim_expires_at=now + timedelta(seconds=rt.claim_lease_s),
    )
    if not won:
        raise Conflict("the grant to extend has already ended; request access again")
    session.refresh(grant)
    record(
        session,
        "grant.extended",
        actor=request.decided_by or "eice",
        at=now,
        request_id=request.id,
        grant_id=grant.id,
        instance_id=grant.instance_id,
        detail={"expires_at": new_expiry.isoformat(), "extension_request": request.id},
    )
    return grant


def _undo_late_put(rt: Runtime, grant_id: str, principal: str, name: str, put_request_id: str | None) -> str:
    """The grant ended (revoked early, say) while its put was in flight: the put may have
    landed after the revocation's delete and put access back. Take the policy off again at
    once, rather than leave it to the reconciler's next pass. Returns the grant's status."""
    try:
        delete_request_id = rt.iam.delete(principal, name)
    except Exception as exc:  # the reconciler removes it as an orphan on its next pass
        log.error("grant %s ended during its put; could not delete %s again: %s", grant_id, name, exc)
        delete_request_id = None
    with rt.db.transaction() as session:
        grant = session.get(Grant, grant_id)
        assert grant is not None
        record(
            session,
            "grant.late_put_undone",
            actor="eice",
            at=rt.clock.now(),
            request_id=grant.request_id,
            grant_id=grant_id,
            instance_id=grant.instance_id,
            detail={"put_request_id": put_request_id, "delete_request_id": delete_request_id},
        )
        return grant.status


def backoff_s(attempts: int) -> float:
    """Capped exponential backoff with jitter for retrying IAM: 1, 2, 4 ... 60 s."""
    return min(60.0, 2.0 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


def apply_grant(rt: Runtime, grant_id: str) -> str:
    """Put the grant's policy and mark it active. Returns the grant's status afterwards.

    The caller must hold the claim (it created the grant, or claimed it as due).
    """
    with rt.db.transaction() as session:
        grant = session.get(Grant, grant_id)
        if grant is None:
            raise NotFound(f"no grant {grant_id}")
        if grant.claimed_by != rt.worker_id:
            return grant.status
        principal, name, document, version = (
            grant.principal_arn,
            grant.policy_name,
            grant.policy_document,
            grant.policy_version,
        )
    failpoint("after_claim_before_put")
    try:
        request_id = rt.iam.put(principal, name, document)
    except Exception as exc:
        return _apply_failed(rt, grant_id, exc)
    failpoint("after_put_before_commit")
    now = rt.clock.now()
    with rt.db.transaction() as session:
        grant = session.get(Grant, grant_id)
        assert grant is not None
        ended = grant.status not in service.LIVE
    if ended:
        return _undo_late_put(rt, grant_id, principal, name, request_id)
    with rt.db.transaction() as session:
        grant = session.get(Grant, grant_id)
        assert grant is not None
        first = grant.status == GrantStatus.APPLYING
        if first:
            service.transition(
                session, grant_id, frm=GrantStatus.APPLYING, to=GrantStatus.ACTIVE, applied_at=now
            )
        service.release(
            session,
            grant_id,
            worker=rt.worker_id,
            applied_version=version,
            put_request_id=request_id,
            attempts=0,
            next_attempt_at=None,
            last_error=None,
        )
        record(
            session,
            "grant.applied" if first else "grant.reapplied",
            actor="eice",
            at=now,
            request_id=grant.request_id,
            grant_id=grant_id,
            instance_id=grant.instance_id,
            detail={"aws_request_id": request_id, "policy_version": version},
        )
        enqueue(
            session,
            "grant.active" if first else "grant.updated",
            now=now,
            request_id=grant.request_id,
            grant_id=grant_id,
        )
        session.flush()
        session.refresh(grant)
        status, expires_at = grant.status, grant.expires_at
    if rt.on_expiry_known is not None:
        rt.on_expiry_known(grant_id, expires_at)
    return status


def _apply_failed(rt: Runtime, grant_id: str, exc: Exception) -> str:
    code = error_code(exc) or type(exc).__name__
    now = rt.clock.now()
    with rt.db.transaction() as session:
        grant = session.get(Grant, grant_id)
        assert grant is not None
        if code in PERMANENT_PUT_ERRORS and grant.status == GrantStatus.APPLYING:
            # Nothing usable was put; make sure nothing half-made stays behind.
            service.transition(
                session,
                grant_id,
                frm=GrantStatus.APPLYING,
                to=GrantStatus.REVOKING,
                last_error=f"{code}: {exc}"[:2000],
                revoke_reason=f"{APPLY_FAILED}: {code}"[:500],
            )
            record(
                session,
                "grant.failed",
                actor="eice",
                at=now,
                request_id=grant.request_id,
                grant_id=grant_id,
                instance_id=grant.instance_id,
                detail={"error": f"{code}: {exc}"[:500]},
            )
            enqueue(
                session,
                "grant.failed",
                now=now,
                request_id=grant.request_id,
                grant_id=grant_id,
                payload={"error": f"{code}: {exc}"[:500]},
            )
            service.release(session, grant_id, worker=rt.worker_id, next_attempt_at=now)
            return GrantStatus.REVOKING
        attempts = grant.attempts + 1
        service.release(
            session,
            grant_id,
            worker=rt.worker_id,
            attempts=attempts,
            last_error=f"{code}: {exc}"[:2000],
            next_attempt_at=now + timedelta(seconds=backoff_s(attempts)),
        )
        return grant.status
