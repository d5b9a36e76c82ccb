"""The reconciler: IAM and the grants table must agree.

A policy named as this deployment names its grant policies (`eice-grant-<id>`, or
`eice-grant-<deployment>-<id>`) without a live grant is an orphan and is deleted; an
active grant whose policy is missing has drifted and is flagged and re-applied
(the grant is still approved and unexpired: the row, not IAM, is the truth).

A policy with that name but no grant row at all is read first: one whose owner Sid names
another installation (a second bot in the account, under the same naming) is left alone
and reported as foreign; one naming this installation, or none (written before policies
carried an owner), is an orphan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select, update

from access.audit.service import record
from access.aws.calls import error_code
from access.grants import service
from access.grants.models import Grant, GrantStatus
from access.grants.policy import policy_owner
from access.outbox.service import enqueue
from access.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    principals: int = 0
    orphans_deleted: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # another installation's policies, left alone
    errors: list[str] = field(default_factory=list)


def reconcile(rt: Runtime) -> ReconcileReport:
    """One pass over every principal the bot has ever granted to."""
    report = ReconcileReport()
    with rt.db.transaction() as session:
        principals = service.principals_ever_granted(session)
    for principal in principals:
        report.principals += 1
        try:
            names = set(rt.iam.list_grant_names(principal, rt.config.aws.deployment))
        except Exception as exc:
            if error_code(exc) == "NoSuchEntity":
                continue
            report.errors.append(f"{principal}: {exc}")
            continue
        with rt.db.transaction() as session:
            grants = {
                g.policy_name: g
                for g in session.scalars(select(Grant).where(Grant.principal_arn == principal))
            }
        for name in sorted(names):
            grant = grants.get(name)
            # applying/revoking rows belong to the reaper; only finished or unknown ones are orphans
            if grant is not None and grant.status in (
                GrantStatus.APPLYING,
                GrantStatus.ACTIVE,
                GrantStatus.REVOKING,
            ):
                continue
            if grant is None and not _ours(rt, principal, name, report):
                continue
            _delete_orphan(rt, principal, name, grant, report)
        for name, grant in grants.items():
            if grant.status == GrantStatus.ACTIVE and grant.applied_version > 0 and name not in names:
                _flag_drift(rt, grant, report)
    return report


def _ours(rt: Runtime, principal: str, name: str, report: ReconcileReport) -> bool:
    """Whether a grant policy with no row here was written by this installation (or by no
    known one); False, and reported, when it names another or cannot be read."""
    try:
        document = rt.iam.get(principal, name)
    except Exception as exc:
        report.errors.append(f"{principal} {name}: {exc}")
        return False
    if document is None:  # gone since the listing
        return False
    owner = policy_owner(document)
    if owner is not None and owner != rt.installation_id():
        log.info("%s on %s belongs to installation %s; leaving it", name, principal, owner)
        report.foreign.append(name)
        return False
    return True


def _delete_orphan(
    rt: Runtime, principal: str, name: str, grant: Grant | None, report: ReconcileReport
) -> None:
    try:
        request_id = rt.iam.delete(principal, name)
    except Exception as exc:
        report.errors.append(f"{principal} {name}: {exc}")
        return
    now = rt.clock.now()
    with rt.db.transaction() as session:
        record(
            session,
            "policy.orphan_deleted",
            actor="eice",
            at=now,
            grant_id=grant.id if grant else None,
            request_id=grant.request_id if grant else None,
            instance_id=grant.instance_id if grant else None,
            detail={
                "principal": principal,
                "policy_name": name,
                "aws_request_id": request_id,
                "grant_status": grant.status if grant else None,
            },
        )
        enqueue(
            session,
            "policy.orphan",
            now=now,
            grant_id=grant.id if grant else None,
            payload={"principal": principal, "policy_name": name},
        )
    report.orphans_deleted.append(name)


def _flag_drift(rt: Runtime, grant: Grant, report: ReconcileReport) -> None:
    now = rt.clock.now()
    with rt.db.transaction() as session:
        won = session.execute(
            update(Grant)
            .where(
                Grant.id == grant.id,
                Grant.status == GrantStatus.ACTIVE,
                Grant.applied_version == grant.applied_version,
            )
            .values(applied_version=0)
        ).rowcount  # type: ignore[attr-defined]
        if not won:
            return
        record(
            session,
            "grant.drift",
            actor="eice",
            at=now,
            request_id=grant.request_id,
            grant_id=grant.id,
            instance_id=grant.instance_id,
            detail={
                "principal": grant.principal_arn,
                "policy_name": grant.policy_name,
                "action": "re-applying",
            },
        )
        enqueue(session, "grant.drift", now=now, request_id=grant.request_id, grant_id=grant.id)
    report.drift.append(grant.id)
