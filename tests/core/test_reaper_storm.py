"""A storm of expiries: one reaper pass revokes them all, batched, each exactly once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from moto.iam.models import iam_backends
from sqlalchemy import func, select, update

from access.audit.models import AuditEvent
from access.audit.service import verify_chain
from access.bench.seed import seed_grants, spread
from access.grants import service
from access.grants.finish import finish_revoked_many
from access.grants.models import Grant, GrantStatus
from access.outbox.models import OutboxMessage
from access.runtime import Runtime
from access.scheduler.reaper import reap
from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox


def _seed(aws: AwsSandbox, estate: Estate, rt: Runtime, count: int, start: datetime) -> list[str]:
    seeded = seed_grants(
        aws, estate, rt.db, spread(count, start, 5), role_prefix=f"storm-{uuid.uuid4().hex[:6]}"
    )
    return [g.id for g in seeded]


def test_storm_of_expired_grants_is_revoked_in_one_pass_with_one_delete_each(
    rt: Runtime, aws: AwsSandbox, estate: Estate
) -> None:
    ids = _seed(aws, estate, rt, 120, datetime.now(UTC) - timedelta(seconds=10))
    aws.faults.reset_counters()

    report = reap(rt, batch=50)

    assert report.revoked == 120
    assert aws.faults.counters.snapshot()["counts"].get("iam:DeleteRolePolicy") == 120
    with rt.db.transaction() as session:
        statuses = set(session.scalars(select(Grant.status).where(Grant.id.in_(ids))))
        assert statuses == {GrantStatus.REVOKED}
        assert (
            session.scalar(
                select(func.count()).where(Grant.id.in_(ids), Grant.delete_request_id.is_not(None))
            )
            == 120
        )
        revoked_rows = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.kind == "grant.revoked")
        )
        notes = session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "grant.revoked")
        )
        assert (revoked_rows, notes) == (120, 120)
        assert verify_chain(session).ok
    backend = iam_backends[aws.account_id]["aws"]
    with rt.db.transaction() as session:
        arns = set(session.scalars(select(Grant.principal_arn).where(Grant.id.in_(ids))))
    assert all(not backend.get_role(arn.rsplit("/", 1)[-1]).policies for arn in arns)


def test_batch_finish_leaves_a_grant_someone_else_finished_alone(
    rt: Runtime, aws: AwsSandbox, estate: Estate
) -> None:
    first, second = _seed(aws, estate, rt, 2, datetime.now(UTC) - timedelta(seconds=10))
    with rt.db.transaction() as session:
        session.execute(
            update(Grant).where(Grant.id.in_([first, second])).values(status=GrantStatus.REVOKING)
        )
        session.execute(update(Grant).where(Grant.id == second).values(status=GrantStatus.REVOKED))
    now = datetime.now(UTC)
    with rt.db.transaction() as session:
        results = finish_revoked_many(session, {first: "req-1", second: "req-2"}, now=now)
    assert results == {first: GrantStatus.REVOKED, second: GrantStatus.REVOKED}
    with rt.db.transaction() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.kind == "grant.revoked")).all()
        assert [r.grant_id for r in rows] == [first]  # the second was not ours to finish
        assert session.get(Grant, first).delete_request_id == "req-1"  # type: ignore[union-attr]
        assert session.get(Grant, second).delete_request_id is None  # type: ignore[union-attr]


def test_next_expiry_is_the_earliest_future_active_grant(
    rt: Runtime, aws: AwsSandbox, estate: Estate
) -> None:
    now = datetime.now(UTC)
    _seed(aws, estate, rt, 3, now + timedelta(seconds=30))
    with rt.db.transaction() as session:
        expiries = sorted(session.scalars(select(Grant.expires_at)))
        assert service.next_expiry(session, after=now) == expiries[0]
        assert service.next_expiry(session, after=expiries[-1]) is None
    reap(rt)  # nothing due: nothing revoked, and the rt fixture's clean-up needs no policy left
    with rt.db.transaction() as session:
        session.execute(update(Grant).values(expires_at=now - timedelta(seconds=1)))
    assert reap(rt).revoked == 3
