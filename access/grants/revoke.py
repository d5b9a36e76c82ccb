"""Revoking a grant: claim it for revoking (a person's early revoke, an admin's hand close),
delete its policy (DeleteRolePolicy), and back off when IAM refuses.

The same crash-safe ordering as applying: the claim is committed before the IAM
call, the delete is idempotent, and the final state is a conditional UPDATE
(`access.grants.finish`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from access.audit.service import record
from access.aws.calls import error_code
from access.config.permissions import Actor, can_revoke
from access.errors import Conflict, NotFound, NotPermitted
from access.failpoints import failpoint
from access.grants import service
from access.grants.finish import finish_revoked
from access.grants.flows import backoff_s
from access.grants.models import Grant, GrantStatus
from access.grants.overdue import flag_overdue

if TYPE_CHECKING:
    from access.runtime import Runtime


def revoke_grant(rt: Runtime, grant_id: str) -> str:
    """Delete the grant's policy and mark it revoked (or failed, if it never applied).

    The caller must hold the claim and the grant must be `revoking`.
    """
    with rt.db.transaction() as session:
        grant = session.get(Grant, grant_id)
        if grant is None:
            raise NotFound(f"no grant {grant_id}")
        if grant.claimed_by != rt.worker_id or grant.status != GrantStatus.REVOKING:
            return grant.status
        principal, name = grant.principal_arn, grant.policy_name
    try:
        request_id = rt.iam.delete(principal, name)
    except Exception as exc:
        return revoke_failed(rt, grant_id, exc)
    failpoint("after_delete_before_commit")
    now = rt.clock.now()
    with rt.db.transaction() as session:
        grant = session.get(Grant, grant_id)
        assert grant is not None
        return finish_revoked(session, grant, request_id, now=now, overdue_after_s=rt.overdue_after_s)


def revoke_failed(rt: Runtime, grant_id: str, exc: Exception) -> str:
    """Record a failed DeleteRolePolicy: back off, and flag the grant once it is overdue."""
    code = error_code(exc) or type(exc).__name__
    now = rt.clock.now()
    with rt.db.transaction() as session:
        grant = session.get(Grant, grant_id)
        assert grant is not None
        attempts = grant.attempts + 1
        values: dict[str, object] = {
            "attempts": attempts,
            "last_error": f"{code}: {exc}"[:2000],
            "next_attempt_at": now + timedelta(seconds=backoff_s(attempts)),
        }
        overdue = grant.overdue_at is None and (now - grant.expires_at).total_seconds() > rt.overdue_after_s
        if overdue:
            values["overdue_at"] = now
        service.release(session, grant_id, worker=rt.worker_id, **values)
        if overdue:
            flag_overdue(session, grant, now=now, error=f"{code}: {exc}")
        return grant.status


def request_revoke(
    session: Session, rt: Runtime, grant_id: str, actor: Actor, *, reason: str = "revoked early"
) -> Grant:
    """Early revocation by a person: claim the grant for revoking; the edge then calls revoke_grant."""
    now = rt.clock.now()
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id}")
    from access.access_requests.flows import current_rule
    from access.access_requests.models import AccessRequest

    request = session.get(AccessRequest, grant.request_id)
    assert request is not None
    verdict = can_revoke(
        actor,
        requester_id=grant.requester_id,
        approvers=current_rule(rt, request).approvers,
        config=rt.config,
    )
    if not verdict:
        raise NotPermitted(verdict.reason)
    if not service.transition(
        session,
        grant_id,
        frm=service.LIVE,
        to=GrantStatus.REVOKING,
        revoked_by=actor.user_id,
        revoke_reason=reason[:500],
        claimed_by=rt.worker_id,
        claim_expires_at=now + timedelta(seconds=rt.claim_lease_s),
        next_attempt_at=None,
    ):
        session.refresh(grant)
        raise Conflict(f"grant {grant_id} is already {grant.status}")
    record(
        session,
        "grant.revoke_requested",
        actor=actor.user_id,
        at=now,
        request_id=grant.request_id,
        grant_id=grant_id,
        instance_id=grant.instance_id,
        detail={"reason": reason[:500]},
    )
    session.refresh(grant)
    return grant


def close_unrevocable(session: Session, rt: Runtime, grant_id: str, actor: Actor, *, reason: str) -> Grant:
    """An admin closes a grant IAM refuses to revoke (e.g. the role was deleted by hand)."""
    from access.config.permissions import is_admin

    now = rt.clock.now()
    if not is_admin(actor, rt.config):
        raise NotPermitted("only admins can close a grant by hand")
    if not reason.strip():
        raise NotPermitted("say why the grant is closed by hand")
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id}")
    if not service.transition(
        session,
        grant_id,
        frm=GrantStatus.REVOKING,
        to=GrantStatus.REVOKED,
        revoked_at=now,
        revoke_reason=f"closed by admin: {reason}"[:500],
        claimed_by=None,
        claim_expires_at=None,
    ):
        raise Conflict(
            f"grant {grant_id} is {grant.status}; only a grant stuck in revoking can be closed by hand"
        )
    record(
        session,
        "grant.closed_by_admin",
        actor=actor.user_id,
        at=now,
        request_id=grant.request_id,
        grant_id=grant_id,
        instance_id=grant.instance_id,
        detail={"reason": reason[:500], "last_error": grant.last_error},
    )
    return grant
