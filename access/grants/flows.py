"""Grant use cases: create (row first), apply (PutRolePolicy), revoke (DeleteRolePolicy), extend.

Crash-safe ordering: the row with its policy name and document is committed before
any IAM call; IAM calls are idempotent; the final state is a conditional UPDATE.
A crash anywhere leaves a row the reaper (stale claim) or reconciler finishes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session, defer

from access.audit.service import AuditEntry, record, record_many
from access.aws.calls import error_code
from access.config.permissions import Actor, can_revoke
from access.config.rules import Target, effective_rule
from access.errors import Conflict, NotFound, NotPermitted
from access.failpoints import failpoint
from access.grants import service
from access.grants.models import Grant, GrantStatus
from access.grants.policy import (
    GrantScope,
    check_policy_fits,
    grant_policy,
    policy_name,
    truncate_to_second,
)
from access.outbox.service import enqueue

if TYPE_CHECKING:
    from access.access_requests.models import AccessRequest
    from access.runtime import Runtime

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


def scope_of(grant: Grant) -> GrantScope:
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
    )


def build_grant(session: Session, rt: Runtime, request: AccessRequest, *, now: datetime) -> Grant:
    """Insert the grant row (status applying, claimed by this process) for an approved request."""
    from access.runtime import new_id

    rule = effective_rule(rt.config, Target(request.instance_tags, request.region, request.account_id))
    grant_id = new_id("g")
    starts = truncate_to_second(now)
    grant = Grant(
        id=grant_id,
        request_id=request.id,
        status=GrantStatus.APPLYING,
        requester_id=request.requester_id,
        principal_arn=request.principal_arn,
        policy_name=policy_name(grant_id),
        policy_document={},
        account_id=request.account_id,
        region=request.region,
        instance_id=request.instance_id,
        endpoint_id=request.endpoint_id,
        private_ip=request.private_ip,
        port=request.port,
        os_user=request.os_user,
        overshoot_s=int(rule.max_tunnel_overshoot.total_seconds()),
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
    grant.policy_document = grant_policy(scope_of(grant))
    check_policy_fits(grant.policy_document, grant.principal_arn)
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
    grant = session.get(Grant, request.extends_grant_id) if request.extends_grant_id else None
    if grant is None or grant.status not in service.LIVE or grant.expires_at <= now:
        raise Conflict("the grant to extend has already ended; request access again")
    new_expiry = grant.expires_at + timedelta(seconds=request.duration_s)
    scope = scope_of(grant)
    document = grant_policy(GrantScope(**{**scope.__dict__, "expires_at": new_expiry}))
    check_policy_fits(document, grant.principal_arn)
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


def finish_revoked(
    session: Session,
    grant: Grant,
    request_id: str | None,
    *,
    now: datetime,
    overdue_after_s: float | None = None,
) -> str:
    """Mark one deleted grant revoked (or failed, if it never applied), with its audit row and note.

    A grant revoked more than `overdue_after_s` after its expiry that was never
    flagged (one long, retried delete can cross the line unseen) gets its one alert now.
    """
    failed = grant.applied_at is None and (grant.revoke_reason or "").startswith(APPLY_FAILED)
    final = GrantStatus.FAILED if failed else GrantStatus.REVOKED
    if not service.transition(
        session,
        grant.id,
        frm=GrantStatus.REVOKING,
        to=final,
        revoked_at=now,
        delete_request_id=request_id,
        claimed_by=None,
        claim_expires_at=None,
        next_attempt_at=None,
    ):
        return grant.status
    _revoked_notes(session, grant, final, request_id, now=now)
    flag_revoked_late(session, [grant], now=now, overdue_after_s=overdue_after_s)
    return final


def flag_revoked_late(
    session: Session, grants: Sequence[Grant], *, now: datetime, overdue_after_s: float | None
) -> int:
    """One overdue alert for each of these just-revoked grants that was late and never flagged."""
    if overdue_after_s is None:
        return 0
    flagged = 0
    for grant in grants:
        late_s = (now - grant.expires_at).total_seconds()
        if grant.overdue_at is not None or late_s <= overdue_after_s:
            continue
        marked = session.execute(
            update(Grant)
            .where(Grant.id == grant.id, Grant.overdue_at.is_(None))
            .values(overdue_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(marked, "rowcount", 0) == 1:
            flag_overdue(session, grant, now=now, error="", revoked_late_s=round(late_s, 1))
            flagged += 1
    return flagged


def _revoked_notes(
    session: Session, grant: Grant, final: str, request_id: str | None, *, now: datetime
) -> None:
    record_many(session, [_revoked_entry(grant, final, request_id, now=now)])
    _revoked_note(session, grant, final, now=now)


def _revoked_entry(grant: Grant, final: str, request_id: str | None, *, now: datetime) -> AuditEntry:
    return AuditEntry(
        "grant.revoked" if final == GrantStatus.REVOKED else "grant.cleaned_up",
        actor=grant.revoked_by or "eice",
        at=now,
        request_id=grant.request_id,
        grant_id=grant.id,
        instance_id=grant.instance_id,
        detail={
            "aws_request_id": request_id,
            "reason": grant.revoke_reason or "expired",
            "lag_s": round((now - grant.expires_at).total_seconds(), 3),
        },
    )


def _revoked_note(session: Session, grant: Grant, final: str, *, now: datetime) -> None:
    enqueue(
        session,
        "grant.revoked" if final == GrantStatus.REVOKED else "grant.failed_cleaned",
        now=now,
        request_id=grant.request_id,
        grant_id=grant.id,
    )


def finish_revoked_many(
    session: Session,
    deleted: dict[str, str | None],
    *,
    now: datetime,
    overdue_after_s: float | None = None,
) -> dict[str, str]:
    """`finish_revoked` for a batch whose policies are deleted: two UPDATEs instead of one per grant.

    Each grant still moves only from `revoking` (`UPDATE ... RETURNING` says which won);
    the winners get their audit row and notification as one by one.
    """
    rows = session.scalars(
        select(Grant).options(defer(Grant.policy_document)).where(Grant.id.in_(list(deleted)))
    ).all()
    cleaned = {
        g.id for g in rows if g.applied_at is None and (g.revoke_reason or "").startswith(APPLY_FAILED)
    }
    won: set[str] = set()
    for final, group in ((GrantStatus.FAILED, cleaned), (GrantStatus.REVOKED, set(deleted) - cleaned)):
        if group:
            won.update(
                session.scalars(
                    update(Grant)
                    .where(Grant.id.in_(list(group)), Grant.status == GrantStatus.REVOKING)
                    .values(
                        status=final,
                        revoked_at=now,
                        claimed_by=None,
                        claim_expires_at=None,
                        next_attempt_at=None,
                    )
                    .returning(Grant.id)
                    .execution_options(synchronize_session=False)
                )
            )
    table = Grant.__table__
    assert isinstance(table, Table)
    ids = [{"gid": gid, "rid": deleted[gid]} for gid in sorted(won) if deleted[gid]]
    if ids:
        session.execute(
            update(table).where(table.c.id == bindparam("gid")).values(delete_request_id=bindparam("rid")),
            ids,
        )
    results: dict[str, str] = {}
    finished: list[tuple[Grant, str]] = []
    for grant in rows:
        outcome: str = GrantStatus.FAILED if grant.id in cleaned else GrantStatus.REVOKED
        results[grant.id] = outcome if grant.id in won else grant.status
        if grant.id in won:
            finished.append((grant, outcome))
    record_many(session, [_revoked_entry(g, end, deleted[g.id], now=now) for g, end in finished])
    for grant, end in finished:
        _revoked_note(session, grant, end, now=now)
    flag_revoked_late(session, [g for g, _ in finished], now=now, overdue_after_s=overdue_after_s)
    return results


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


def flag_overdue(
    session: Session, grant: Grant, *, now: datetime, error: str, revoked_late_s: float | None = None
) -> None:
    """One alert per grant that outlived its expiry by more than the allowed lag.

    `revoked_late_s` is set when the grant is already revoked, just that late.
    """
    detail: dict[str, object] = {"error": error[:500], "expired_at": grant.expires_at.isoformat()}
    payload: dict[str, object] = {"error": error[:500]}
    if revoked_late_s is not None:
        detail["revoked_late_s"] = payload["revoked_late_s"] = revoked_late_s
    record(
        session,
        "grant.overdue",
        actor="eice",
        at=now,
        request_id=grant.request_id,
        grant_id=grant.id,
        instance_id=grant.instance_id,
        detail=detail,
    )
    enqueue(
        session,
        "grant.overdue",
        now=now,
        request_id=grant.request_id,
        grant_id=grant.id,
        payload=payload,
    )


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
