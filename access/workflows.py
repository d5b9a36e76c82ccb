"""Units of work shared by every edge (Slack listeners, CLI, Lambda): each opens its own
transactions, commits, and only then makes the IAM call that follows.
"""

from __future__ import annotations

from collections.abc import Callable

from access.access_requests.flows import ApprovalOutcome, approve, create_request, deny
from access.access_requests.models import AccessRequest
from access.access_requests.prepare import PreparedRequest, RequestInput, prepare_request
from access.audit.service import record
from access.config.permissions import Actor
from access.errors import Conflict, NotPermitted
from access.failpoints import failpoint
from access.grants.flows import apply_grant
from access.grants.revoke import request_revoke, revoke_grant
from access.runtime import Runtime


def submit_request(
    rt: Runtime, inp: RequestInput, *, before_write: Callable[[PreparedRequest], None] | None = None
) -> ApprovalOutcome:
    """Validate and look up (no writes), write the request, and apply its grant if it was auto-approved.

    `before_write` sees the prepared request (with its pre-flight report) before
    anything is written, so the requester can hear of a failing pre-flight before
    the approval card pages anyone.
    """
    prepared = prepare_request(rt, inp)
    if before_write is not None:
        before_write(prepared)
    with rt.db.transaction() as session:
        outcome = create_request(session, rt, prepared)
    if outcome.grant_id:
        failpoint("after_approve_commit")
        apply_grant(rt, outcome.grant_id)
    return outcome


def approve_request(rt: Runtime, request_id: str, actor: Actor) -> ApprovalOutcome:
    """One approver's click; the approval that completes N of M also applies the grant.

    A refused click (not an approver, self-approval, too late, already decided) is
    itself put on the record before the error goes back to the clicker.
    """
    try:
        with rt.db.transaction() as session:
            outcome = approve(session, rt, request_id, actor)
    except (NotPermitted, Conflict) as exc:
        _record_refusal(rt, "approval.refused", request_id, actor, exc.message)
        raise
    if outcome.grant_id:
        failpoint("after_approve_commit")
        apply_grant(rt, outcome.grant_id)
    return outcome


def deny_request(rt: Runtime, request_id: str, actor: Actor, reason: str = "") -> AccessRequest:
    """An approver (or the requester) says no."""
    try:
        with rt.db.transaction() as session:
            return deny(session, rt, request_id, actor, reason)
    except (NotPermitted, Conflict) as exc:
        _record_refusal(rt, "denial.refused", request_id, actor, exc.message)
        raise


def revoke_now(rt: Runtime, grant_id: str, actor: Actor, *, reason: str = "revoked early") -> str:
    """End a grant before its expiry; returns its status afterwards."""
    with rt.db.transaction() as session:
        request_revoke(session, rt, grant_id, actor, reason=reason)
    return revoke_grant(rt, grant_id)


def _record_refusal(rt: Runtime, kind: str, request_id: str, actor: Actor, reason: str) -> None:
    with rt.db.transaction() as session:
        request = session.get(AccessRequest, request_id)
        if request is None:
            return  # nothing to refuse against; the error says so
        record(
            session,
            kind,
            actor=actor.user_id,
            at=rt.clock.now(),
            request_id=request_id,
            instance_id=request.instance_id,
            detail={"reason": reason},
        )
