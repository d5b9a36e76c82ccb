"""Request -> approve -> policy in IAM -> expiry -> policy gone, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from access.access_requests.flows import approve
from access.access_requests.models import AccessRequest, RequestStatus
from access.access_requests.prepare import RequestInput
from access.audit.models import AuditEvent
from access.audit.service import verify_chain
from access.clock import FixedClock
from access.config.permissions import Actor
from access.errors import Conflict, NotPermitted
from access.grants.models import Grant, GrantStatus
from access.runtime import Runtime
from access.scheduler.clock import GrantClock
from access.scheduler.reaper import reap
from access.workflows import approve_request, revoke_now, submit_request
from sandbox.aws.seed import Estate
from sandbox.aws.server import AwsSandbox
from tests.core.conftest import iam_grant_policies, make_runtime

ALICE = Actor("U0ALICE")
BOB = Actor("U0BOB")
CAROL = Actor("U0CAROL")


def ask(
    rt: Runtime, ref: str = "web-1", duration: str = "30m", who: Actor = ALICE, **kw: object
) -> AccessRequest:
    outcome = submit_request(
        rt,
        RequestInput(requester=who, instance_ref=ref, duration=duration, reason="disk alarm", **kw),
    )  # type: ignore[arg-type]
    return outcome.request


def grant_of(rt: Runtime, request_id: str) -> Grant:
    with rt.db.transaction() as session:
        grant = session.scalars(select(Grant).where(Grant.request_id == request_id)).one()
        session.expunge(grant)
        return grant


def test_approved_grant_puts_policy_and_revokes_it_on_time(rt: Runtime, estate: Estate) -> None:
    clock = GrantClock(rt, reconcile_every_s=3600)
    clock.start()
    try:
        request = ask(rt, duration="4s")
        assert request.status == RequestStatus.PENDING
        outcome = approve_request(rt, request.id, BOB)
        assert outcome.approved and outcome.grant_id
        grant = grant_of(rt, request.id)
        assert grant.status == GrantStatus.ACTIVE
        alice = estate.role_arns["alice"]
        assert rt.iam.list_grant_names(alice) == [grant.policy_name]
        document = rt.iam.get(alice, grant.policy_name)
        assert document == grant.policy_document
        deadline = time.monotonic() + 15
        while grant_of(rt, request.id).status != GrantStatus.REVOKED and time.monotonic() < deadline:
            time.sleep(0.1)
        done = grant_of(rt, request.id)
        assert done.status == GrantStatus.REVOKED
        assert rt.iam.list_grant_names(alice) == []
        assert done.revoked_at is not None
        lag = (done.revoked_at - done.expires_at).total_seconds()
        assert 0 <= lag <= 2.0, f"revoked {lag:.2f}s after expiry"
    finally:
        clock.stop()
    with rt.db.transaction() as session:
        kinds = list(session.scalars(select(AuditEvent.kind).order_by(AuditEvent.seq)))
        assert kinds[:1] == ["request.created"]
        for kind in (
            "approval.given",
            "request.approved",
            "grant.created",
            "grant.applied",
            "grant.revoked",
        ):
            assert kind in kinds
        assert verify_chain(session).ok


def test_early_revoke_removes_the_policy(rt: Runtime, estate: Estate) -> None:
    request = ask(rt)
    outcome = approve_request(rt, request.id, BOB)
    assert outcome.grant_id
    assert rt.iam.list_grant_names(estate.role_arns["alice"])
    assert revoke_now(rt, outcome.grant_id, ALICE, reason="done") == GrantStatus.REVOKED
    assert rt.iam.list_grant_names(estate.role_arns["alice"]) == []
    with pytest.raises(Conflict):
        revoke_now(rt, outcome.grant_id, ALICE)


def test_two_of_m_needs_two_distinct_approvers(rt: Runtime, estate: Estate) -> None:
    request = ask(rt, "db-1")
    first = approve_request(rt, request.id, BOB)
    assert not first.approved and first.request.status == RequestStatus.PENDING
    assert rt.iam.list_grant_names(estate.role_arns["alice"]) == []
    with pytest.raises(Conflict, match="already approved"):
        approve_request(rt, request.id, BOB)
    second = approve_request(rt, request.id, CAROL)
    assert second.approved and second.grant_id
    assert second.approvals == ["U0BOB", "U0CAROL"]
    assert grant_of(rt, request.id).status == GrantStatus.ACTIVE


def test_self_approval_is_refused_and_audited(rt: Runtime) -> None:
    request = ask(rt)
    with pytest.raises(NotPermitted, match="your own request"):
        approve_request(rt, request.id, ALICE)
    with rt.db.transaction() as session:
        refused = session.scalars(select(AuditEvent).where(AuditEvent.kind == "approval.refused")).one()
        assert refused.actor == "U0ALICE" and "own request" in refused.detail["reason"]
        assert session.get(AccessRequest, request.id).status == RequestStatus.PENDING  # type: ignore[union-attr]


def test_non_approver_is_refused(rt: Runtime) -> None:
    request = ask(rt)
    with pytest.raises(NotPermitted, match="not an approver"):
        approve_request(rt, request.id, Actor("U0DAVE"))


def test_approver_by_user_group_is_accepted(rt: Runtime) -> None:
    request = ask(rt)
    outcome = approve_request(rt, request.id, Actor("U0ONCALLER", frozenset({"S0ONCALL"})))
    assert outcome.approved


def test_auto_approve_rule_grants_at_once(rt: Runtime, estate: Estate) -> None:
    request = ask(rt, "dev-box")
    assert request.status == RequestStatus.APPROVED and request.auto_approved
    grant = grant_of(rt, request.id)
    assert grant.status == GrantStatus.ACTIVE
    assert rt.iam.list_grant_names(estate.role_arns["alice"]) == [grant.policy_name]


def test_break_glass_self_approves_and_is_flagged(rt: Runtime) -> None:
    request = ask(rt, "db-1", duration="20m", break_glass=True)
    assert request.status == RequestStatus.APPROVED
    with rt.db.transaction() as session:
        flagged = session.scalars(select(AuditEvent).where(AuditEvent.kind == "break_glass.used")).one()
        assert flagged.detail["needs_review"] is True


def test_break_glass_is_capped_by_its_own_max(rt: Runtime) -> None:
    from access.errors import InvalidInput

    with pytest.raises(InvalidInput, match="longer than"):
        ask(rt, "db-1", duration="2h", break_glass=True)


def test_approval_time_out_expires_the_request(db_url: str, config, aws, estate: Estate) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    clock = FixedClock(datetime.now(UTC))
    rt = make_runtime(db_url, config, clock=clock)
    request = ask(rt)
    clock.advance(31 * 60)
    report = reap(rt)
    assert report.expired_requests == 1
    with rt.db.transaction() as session:
        assert session.get(AccessRequest, request.id).status == RequestStatus.EXPIRED  # type: ignore[union-attr]
        with pytest.raises(Conflict, match="already expired"):
            approve(session, rt, request.id, BOB)
    assert rt.iam.list_grant_names(estate.role_arns["alice"]) == []


def test_second_request_for_same_instance_is_refused_while_pending(rt: Runtime) -> None:
    ask(rt)
    with pytest.raises(Conflict, match="pending request"):
        ask(rt)


def test_extension_moves_expiry_and_reputs_policy(rt: Runtime, estate: Estate) -> None:
    from access.access_requests.flows import create_request
    from access.access_requests.prepare import prepare_request

    request = ask(rt, duration="10m")
    outcome = approve_request(rt, request.id, BOB)
    grant = grant_of(rt, request.id)
    prepared = prepare_request(
        rt, RequestInput(requester=ALICE, instance_ref=grant.instance_id, duration="20m")
    )
    with rt.db.transaction() as session:
        extension = create_request(session, rt, prepared, extends=session.get(Grant, grant.id))
    approve_request(rt, extension.request.id, BOB)
    extended = grant_of(rt, request.id)
    assert extended.expires_at == grant.expires_at + timedelta(minutes=20)
    assert extended.applied_version == extended.policy_version == 2
    assert rt.iam.get(estate.role_arns["alice"], grant.policy_name) == extended.policy_document
    assert outcome.grant_id == extended.id


def test_counts_one_put_per_grant(rt: Runtime, aws) -> None:  # type: ignore[no-untyped-def]
    before = aws.faults.counts["iam:PutRolePolicy"]
    request = ask(rt)
    approve_request(rt, request.id, BOB)
    assert aws.faults.counts["iam:PutRolePolicy"] - before == 1
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Grant)) == 1


def test_request_carries_the_preflight_result(rt: Runtime) -> None:
    request = ask(rt)
    assert request.preflight is not None
    assert request.preflight["instance_id"] == request.instance_id
    assert request.preflight["status"] in ("ok", "warning")


def test_unreachable_instance_is_flagged_before_anyone_approves(rt: Runtime, estate: Estate) -> None:
    ec2 = rt.clients.ec2("us-east-1")
    web = estate.instance("web-1")
    closed_sg = ec2.create_security_group(
        GroupName=f"closed-{time.time_ns()}", Description="no ingress", VpcId=web.vpc_id
    )["GroupId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    made = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SubnetId=web.subnet_id, InstanceType="t3.micro",
        SecurityGroupIds=[closed_sg],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "env", "Value": "prod"}]}],
    )  # fmt: skip
    instance_id = made["Instances"][0]["InstanceId"]
    request = ask(rt, instance_id)
    assert request.status == RequestStatus.PENDING
    assert request.preflight is not None and request.preflight["status"] == "failure"
    assert "will fail" in request.preflight["verdict"] and closed_sg in request.preflight["verdict"]


def test_a_grant_revoked_past_the_overdue_line_raises_its_one_alert(
    rt: Runtime, estate: Estate, db_url: str, config
) -> None:  # type: ignore[no-untyped-def]
    grant = grant_of(rt, ask(rt, "dev-box").id)
    # The bot comes back 5 minutes after the expiry: nobody flagged the grant while it
    # was down, so the revocation itself must say it came late.
    late = make_runtime(
        db_url,
        config,
        clock=FixedClock(grant.expires_at + timedelta(minutes=5)),
        claim_lease_s=1.0,
        overdue_after_s=60.0,
    )
    try:
        reap(late, housekeeping=False)
        reap(late, housekeeping=False)
    finally:
        late.db.dispose()
    assert grant_of(rt, grant.request_id).status == GrantStatus.REVOKED
    assert rt.iam.list_grant_names(estate.role_arns["alice"]) == []
    with rt.db.transaction() as session:
        alerts = list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.kind == "grant.overdue", AuditEvent.grant_id == grant.id)
            )
        )
    assert [a.detail["revoked_late_s"] for a in alerts] == [300.0]
    assert grant_of(rt, grant.request_id).overdue_at is not None


def test_a_put_that_lands_after_an_early_revoke_is_taken_off_again(
    rt: Runtime, aws: AwsSandbox, estate: Estate
) -> None:
    """Approve, and while the grant's PutRolePolicy is still in flight, revoke: the revoke's
    delete finds nothing, then the put lands. The policy must not stay on the role."""
    import threading

    alice = estate.role_arns["alice"]
    request_id = submit_request(rt, RequestInput(Actor("U0ALICE"), "web-1", "30m")).request.id
    aws.faults.update({"iam_put_delay_s": 3.0})
    try:
        approving = threading.Thread(target=approve_request, args=(rt, request_id, Actor("U0BOB")))
        approving.start()
        deadline = time.monotonic() + 10
        grant = None
        while grant is None and time.monotonic() < deadline:
            with rt.db.transaction() as session:
                grant = session.scalars(select(Grant).where(Grant.request_id == request_id)).first()
            time.sleep(0.05)
        assert grant is not None and grant.status == GrantStatus.APPLYING  # its put is in flight
        assert revoke_now(rt, grant.id, Actor("U0ADMIN"), reason="changed my mind") == "revoked"
        assert grant.policy_name not in iam_grant_policies(rt, alice)  # the put has not landed yet
        approving.join(30)
    finally:
        aws.faults.update({"iam_put_delay_s": 0.0})
    assert not approving.is_alive()
    assert grant.policy_name not in iam_grant_policies(rt, alice)  # landed, and taken off again
    with rt.db.transaction() as session:
        assert session.get(Grant, grant.id).status == GrantStatus.REVOKED
        kinds = [a.kind for a in session.scalars(select(AuditEvent).where(AuditEvent.grant_id == grant.id))]
    assert "grant.late_put_undone" in kinds and "grant.reapplied" not in kinds


DESCRIBE = ["ec2:DescribeInstances", "ec2:DescribeInstanceConnectEndpoints"]


def _describe_allowed(document: dict) -> bool:  # type: ignore[type-arg]
    return any(s.get("Action") == DESCRIBE for s in document["Statement"])


def test_a_rule_that_allows_describe_puts_it_in_the_grant_and_keeps_it_on_extension(
    db_url: str,
    config,
    aws,
    estate: Estate,  # type: ignore[no-untyped-def]
) -> None:
    from access.access_requests.flows import create_request
    from access.access_requests.prepare import prepare_request
    from access.grants.flows import apply_grant

    rules = [r.model_copy(update={"allow_describe": r.name == "dev"}) for r in config.rules]
    rt = make_runtime(db_url, config.model_copy(update={"rules": rules}))
    alice = estate.role_arns["alice"]
    try:
        plain = ask(rt, "web-1")  # the default rule: no Describe
        approve_request(rt, plain.id, BOB)
        assert not grant_of(rt, plain.id).allow_describe
        assert not _describe_allowed(rt.iam.get(alice, grant_of(rt, plain.id).policy_name))

        request = ask(rt, "dev-box")  # the dev rule: auto-approved, allow_describe = true
        grant = grant_of(rt, request.id)
        assert grant.allow_describe
        assert _describe_allowed(rt.iam.get(alice, grant.policy_name))
        prepared = prepare_request(
            rt, RequestInput(requester=ALICE, instance_ref=grant.instance_id, duration="20m")
        )
        with rt.db.transaction() as session:
            extension = create_request(session, rt, prepared, extends=session.get(Grant, grant.id))
        assert extension.grant_id == grant.id  # auto-approved like the request
        apply_grant(rt, grant.id)
        extended = grant_of(rt, request.id)
        assert extended.policy_version == extended.applied_version == 2
        assert _describe_allowed(rt.iam.get(alice, grant.policy_name))  # rewritten from the row
    finally:
        for name in rt.iam.list_grant_names(alice):
            rt.iam.delete(alice, name)
        rt.db.dispose()
