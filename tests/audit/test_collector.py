"""The CloudTrail collector against the sandbox's LookupEvents, over HTTP."""

from __future__ import annotations

import contextlib
import math
import random
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from access.audit.cloudtrail_models import CloudTrailEvent, CollectorWatermark
from access.audit.collector import CloudTrailCollector, chain_witness, collector_tick
from access.audit.models import AuditEvent
from access.audit.queries import audit_query, out_of_band_events
from access.audit.service import chain_head, verify_chain
from access.grants.policy import policy_name
from access.ids import new_id
from access.outbox.models import OutboxMessage
from tests.audit.conftest import (
    ACCOUNT,
    make_grant,
    make_runtime,
    now,
    role_person,
    ssh_key_record,
    tunnel_record,
    user_person,
)

ALICE = role_person("alice")
BOB = user_person("bob")
MALLORY = role_person("mallory")


def _events(db):
    with db.transaction() as session:
        return list(session.scalars(select(CloudTrailEvent).order_by(CloudTrailEvent.event_time)))


def _outbox(db, kind):
    with db.transaction() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)))


def _audit_kinds(db):
    with db.transaction() as session:
        return [row.kind for row in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]


def test_tunnel_and_key_events_are_attached_to_their_grant(sandbox, db) -> None:
    t0 = now()
    with db.transaction() as session:
        alice = make_grant(session, ALICE, starts_at=t0 - timedelta(minutes=20))
        bob = make_grant(
            session, BOB, starts_at=t0 - timedelta(minutes=20), requester_id="U0BOB", os_user="bob"
        )
    sandbox.events.record(ssh_key_record(ALICE, at=t0 - timedelta(minutes=11)))
    sandbox.events.record(tunnel_record(ALICE, at=t0 - timedelta(minutes=10)))
    sandbox.events.record(ssh_key_record(BOB, at=t0 - timedelta(minutes=5), os_user="bob", old_shape=True))

    report = CloudTrailCollector(make_runtime(db)).poll()

    assert (report.new, report.matched, report.out_of_band) == (3, 3, 0)
    rows = _events(db)
    assert [(r.event_name, r.grant_id, r.match) for r in rows] == [
        ("SendSSHPublicKey", alice.id, "grant"),
        ("OpenTunnel", alice.id, "grant"),
        ("SendSSHPublicKey", bob.id, "grant"),
    ]
    assert rows[1].principal_arn == ALICE.principal_arn
    assert rows[1].session_arn.startswith("arn:aws:sts::")
    assert (rows[1].endpoint_id, rows[1].private_ip, rows[1].port) == (
        "eice-0123456789abcdef0",
        "10.0.1.4",
        22,
    )
    assert rows[2].os_user == "bob"
    assert _audit_kinds(db) == ["key.pushed", "connection.opened", "key.pushed"]
    assert {m.grant_id for m in _outbox(db, "audit.connection")} == {alice.id, bob.id}
    with db.transaction() as session:
        assert verify_chain(session).ok
        found = audit_query(session, since=t0 - timedelta(days=1), grant_id=alice.id, limit=10)
    assert [c.event_name for c in found[0].connections] == ["SendSSHPublicKey", "OpenTunnel"]
    assert found[0].connections[1].source_ip == "203.0.113.7"
    assert found[0].approvers == ["U0BOSS"]


def test_a_refused_attempt_after_expiry_is_kept_with_the_grant_and_flagged(sandbox, sqlite_db) -> None:
    t0 = now()
    with sqlite_db.transaction() as session:
        grant = make_grant(session, ALICE, starts_at=t0 - timedelta(minutes=50), minutes=30)
    # Expired 20 minutes ago (overshoot 5 min): one refused try, one that got through anyway.
    # Inside the overshoot, one that got through all the same is the grant's, and flagged.
    sandbox.events.record(tunnel_record(ALICE, at=t0 - timedelta(minutes=18)))
    sandbox.events.record(tunnel_record(ALICE, at=t0 - timedelta(minutes=15), error_code="AccessDenied"))
    sandbox.events.record(tunnel_record(ALICE, at=t0 - timedelta(minutes=14)))

    CloudTrailCollector(make_runtime(sqlite_db)).poll()

    overshoot, refused, through = _events(sqlite_db)
    assert (overshoot.grant_id, overshoot.error_code, overshoot.flag) == (grant.id, None, "after_expiry")
    assert (refused.grant_id, refused.match, refused.flag) == (grant.id, "grant", "after_expiry")
    assert refused.error_code == "AccessDenied"
    assert (through.grant_id, through.match) == (None, "out_of_band")
    assert _audit_kinds(sqlite_db) == ["connection.opened", "connection.refused", "connection.out_of_band"]
    with sqlite_db.transaction() as session:
        [audited] = audit_query(session, since=t0 - timedelta(days=1), instance_id=grant.instance_id)
    assert [(c.allowed, c.error_code, c.flag) for c in audited.connections] == [
        (True, None, "after_expiry"),
        (False, "AccessDenied", "after_expiry"),
    ]


def test_a_refused_attempt_after_an_early_revoke_is_flagged_as_such(sandbox, sqlite_db) -> None:
    t0 = now()
    with sqlite_db.transaction() as session:
        grant = make_grant(
            session,
            ALICE,
            starts_at=t0 - timedelta(minutes=20),
            minutes=60,
            revoked_at=t0 - timedelta(minutes=10),
            status="revoked",
        )
    sandbox.events.record(tunnel_record(ALICE, at=t0 - timedelta(minutes=15)))
    sandbox.events.record(tunnel_record(ALICE, at=t0 - timedelta(minutes=10)))  # in the revoke's second
    sandbox.events.record(tunnel_record(ALICE, at=t0 - timedelta(minutes=5), error_code="AccessDenied"))
    # Got through after the revocation (IAM had not dropped the policy everywhere yet).
    sandbox.events.record(tunnel_record(ALICE, at=t0 - timedelta(minutes=9, seconds=57)))

    CloudTrailCollector(make_runtime(sqlite_db)).poll()

    opened, just_before, late, refused = _events(sqlite_db)
    assert (opened.grant_id, opened.flag) == (grant.id, None)
    assert (just_before.grant_id, just_before.flag) == (grant.id, None)
    assert (late.grant_id, late.error_code, late.flag) == (grant.id, None, "after_revoke")
    assert (refused.grant_id, refused.error_code, refused.flag) == (grant.id, "AccessDenied", "after_revoke")


def test_eice_use_without_a_grant_is_recorded_and_announced(sandbox, sqlite_db) -> None:
    t0 = now()
    with sqlite_db.transaction() as session:
        make_grant(session, ALICE, starts_at=t0 - timedelta(minutes=5))
    sandbox.events.record(
        ssh_key_record(MALLORY, at=t0 - timedelta(minutes=2), instance_id="i-0abc1234567890def")
    )
    sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=2)))
    # Alice, but to another port than her grant allows.
    sandbox.events.record(tunnel_record(ALICE, at=t0 - timedelta(minutes=1), port=3389))

    report = CloudTrailCollector(make_runtime(sqlite_db)).poll()

    assert (report.matched, report.out_of_band) == (0, 3)
    # One alert for the page, listing all three (a burst does not become a burst of messages).
    [announced] = _outbox(sqlite_db, "audit.out_of_band")
    assert len(announced.payload["events"]) == 3
    assert {e["principal_arn"] for e in announced.payload["events"]} == {
        MALLORY.principal_arn,
        ALICE.principal_arn,
    }
    with sqlite_db.transaction() as session:
        strays = out_of_band_events(session, since=t0 - timedelta(hours=1), instance_id="i-0abc1234567890def")
    # The tunnel names only endpoint and IP; the collector found the instance behind them.
    assert len(strays) == 3
    assert _audit_kinds(sqlite_db).count("connection.out_of_band") == 3


def test_late_out_of_order_delivery_is_neither_missed_nor_duplicated(sandbox, sqlite_db) -> None:
    rt = make_runtime(sqlite_db)
    t0 = now()
    with sqlite_db.transaction() as session:
        make_grant(session, ALICE, starts_at=t0 - timedelta(minutes=30), minutes=60)
    collector = CloudTrailCollector(rt, account=ACCOUNT)
    rng = random.Random(7)
    recorded = []
    for poll in range(4):
        for _ in range(5):
            # Old eventTimes, delivered from now to a few poll intervals later, in any order.
            age = rng.uniform(0, 600)
            record = tunnel_record(ALICE, at=now() - timedelta(seconds=age))
            sandbox.events.record(record, delay_s=age + rng.uniform(0, 1.5))
            recorded.append(record["eventID"])
        collector.poll()
        if poll == 1:
            with sqlite_db.transaction() as session:
                mark = session.get(CollectorWatermark, (ACCOUNT, "us-east-1", collector_src()))
                assert mark is not None and mark.watermark <= now()
    time.sleep(1.6)
    collector.poll()
    collector.poll()  # everything is seen twice by now; nothing may be stored twice

    rows = _events(sqlite_db)
    assert sorted(r.event_id for r in rows) == sorted(recorded)
    assert all(r.match == "grant" for r in rows)
    assert _audit_kinds(sqlite_db).count("connection.opened") == len(recorded)
    notes = _outbox(sqlite_db, "audit.connection")
    announced = [event["event_id"] for note in notes for event in note.payload["events"]]
    assert sorted(announced) == sorted(recorded)  # each event announced once, a note per grant and page
    assert len(notes) <= 6  # six polls: at most one note each for the one grant, not one per event


def collector_src() -> str:
    return "ec2-instance-connect.amazonaws.com"


def test_watermark_minus_overlap_bounds_the_next_query(sandbox, sqlite_db) -> None:
    t0 = now()
    collector = CloudTrailCollector(make_runtime(sqlite_db), account=ACCOUNT, overlap=timedelta(minutes=15))
    sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=3)))
    collector.poll()
    # Delivered now, 10 min old: inside the overlap, so the next poll still finds it.
    sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=13)))
    # 40 min old: before watermark - overlap, outside what the next poll asks for.
    sandbox.events.record(tunnel_record(MALLORY, at=t0 - timedelta(minutes=40)))
    collector.poll()
    assert len(_events(sqlite_db)) == 2
    with sqlite_db.transaction() as session:
        mark = session.get(CollectorWatermark, (ACCOUNT, "us-east-1", collector_src()))
    assert mark.watermark == t0 - timedelta(minutes=3)


def _max_calls_in_any_second(calls) -> int:
    times = sorted(c.at for c in calls)
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


def _many_grants_and_events(sandbox, db, *, grants: int, events: int) -> list[str]:
    t0 = now()
    people = [role_person(f"p{i:04d}") for i in range(grants)]
    with db.transaction() as session:
        for i, person in enumerate(people):
            make_grant(
                session,
                person,
                starts_at=t0 - timedelta(minutes=40),
                minutes=60,
                requester_id=f"U{i:05d}",
                private_ip=f"10.0.{i // 250}.{i % 250 + 1}",
            )
    recorded = []
    for n in range(events):
        i = n % grants
        record = tunnel_record(
            people[i],
            at=t0 - timedelta(seconds=n % 1800),
            private_ip=f"10.0.{i // 250}.{i % 250 + 1}",
        )
        sandbox.events.record(record)
        recorded.append(record["eventID"])
    return recorded


def _assert_paged_within_the_limit(sandbox, db, *, grants: int, events: int) -> None:
    recorded = _many_grants_and_events(sandbox, db, grants=grants, events=events)
    sandbox.faults.reset_counters()

    report = CloudTrailCollector(make_runtime(db), account=ACCOUNT).poll()

    calls = sandbox.faults.counters.lookup_events_calls
    eice_pages = math.ceil(events / 50)
    assert report.pages == eice_pages + 1  # plus one (empty) page of the bot's IAM calls
    assert len(calls) == report.pages
    assert all(c.accepted for c in calls)
    assert _max_calls_in_any_second(calls) <= 2
    assert report.matched == events
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(CloudTrailEvent)) == len(recorded)
        assert (
            session.scalar(
                select(func.count()).select_from(CloudTrailEvent).where(CloudTrailEvent.grant_id.is_(None))
            )
            == 0
        )


def test_thousand_grants_500_events_cost_one_call_per_page_under_the_limit(sandbox, sqlite_db) -> None:
    _assert_paged_within_the_limit(sandbox, sqlite_db, grants=1000, events=500)


@pytest.mark.slow
def test_thousand_grants_5000_events_cost_one_call_per_page_under_the_limit(sandbox, sqlite_db) -> None:
    _assert_paged_within_the_limit(sandbox, sqlite_db, grants=1000, events=5000)


def test_throttling_from_someone_else_is_retried(sandbox, sqlite_db) -> None:
    sandbox.events.record(tunnel_record(MALLORY, at=now() - timedelta(minutes=1)))
    cloudtrail = make_runtime(sqlite_db).clients.cloudtrail("us-east-1")
    for _ in range(3):  # another tool spends this second's budget
        with contextlib.suppress(Exception):
            cloudtrail.lookup_events(MaxResults=1)
    report = CloudTrailCollector(make_runtime(sqlite_db), account=ACCOUNT).poll()
    assert report.new == 1


def test_the_bots_own_policy_calls_are_matched_by_request_id(sandbox, sqlite_db) -> None:
    rt = make_runtime(sqlite_db)
    iam = rt.clients.iam()
    role = f"audit-{now().strftime('%H%M%S%f')}"
    person = role_person(role)
    iam.create_role(RoleName=role, Path="/eice/", AssumeRolePolicyDocument="{}")
    with sqlite_db.transaction() as session:
        grant = make_grant(session, person, starts_at=now())
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}],
    }
    put_id = rt.iam.put(person.principal_arn, grant.policy_name, document)
    with sqlite_db.transaction() as session:
        session.get(type(grant), grant.id).put_request_id = put_id

    report = collector_tick(rt, CloudTrailCollector(rt))

    assert report["bot_iam"] == 1
    [row] = _events(sqlite_db)
    assert (row.event_name, row.match, row.grant_id, row.aws_request_id) == (
        "PutRolePolicy",
        "bot_iam",
        grant.id,
        put_id,
    )


@pytest.mark.parametrize("deployment", ["", "staging"])
def test_policy_calls_on_another_deployments_grant_policies_are_not_this_bots(
    sandbox, sqlite_db, deployment: str
) -> None:
    rt = make_runtime(sqlite_db, deployment=deployment)
    role = f"audit-{now().strftime('%H%M%S%f')}"
    person = role_person(role)
    rt.clients.iam().create_role(RoleName=role, Path="/eice/", AssumeRolePolicyDocument="{}")
    with sqlite_db.transaction() as session:
        grant = make_grant(session, person, starts_at=now())
        grant.policy_name = policy_name(grant.id, deployment)
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}],
    }
    rt.iam.put(person.principal_arn, grant.policy_name, document)  # no request ID kept: matched by name
    for other in ("prod", "staging", ""):  # another bot's grant policy on the same role
        if other != deployment:
            rt.iam.put(person.principal_arn, policy_name(new_id("g"), other), document)

    report = collector_tick(rt, CloudTrailCollector(rt))

    assert report["bot_iam"] == 1
    [row] = _events(sqlite_db)
    assert (row.event_name, row.match, row.grant_id) == ("PutRolePolicy", "bot_iam", grant.id)


def test_chain_witness_queues_the_head_for_the_audit_channel(sandbox, sqlite_db) -> None:
    rt = make_runtime(sqlite_db)
    sandbox.events.record(tunnel_record(MALLORY, at=now()))
    CloudTrailCollector(rt, account=ACCOUNT).poll()
    payload = chain_witness(rt)
    [message] = _outbox(sqlite_db, "audit.chain_head")
    with sqlite_db.transaction() as session:
        assert (message.payload["seq"], message.payload["hash"]) == chain_head(session)
    assert payload["seq"] == 1


def test_a_refused_attempt_beside_the_grant_is_kept_with_it_and_flagged(sandbox, sqlite_db) -> None:
    t0 = now()
    with sqlite_db.transaction() as session:
        grant = make_grant(session, ALICE, starts_at=t0 - timedelta(minutes=20))
    # During the grant, refused: another port and another IP on its endpoint, another OS user
    # on its instance; and a refused try on an endpoint the grant has nothing to do with.
    sandbox.events.record(
        tunnel_record(ALICE, at=t0 - timedelta(minutes=4), port=3389, error_code="AccessDenied")
    )
    sandbox.events.record(
        tunnel_record(ALICE, at=t0 - timedelta(minutes=3), private_ip="10.0.1.9", error_code="AccessDenied")
    )
    sandbox.events.record(
        ssh_key_record(ALICE, at=t0 - timedelta(minutes=2), os_user="root", error_code="AccessDenied")
    )
    sandbox.events.record(
        tunnel_record(
            ALICE,
            at=t0 - timedelta(minutes=1),
            endpoint_id="eice-0fedcba9876543210",
            error_code="AccessDenied",
        )
    )

    report = CloudTrailCollector(make_runtime(sqlite_db)).poll()

    assert (report.matched, report.out_of_band) == (3, 1)
    rows = _events(sqlite_db)
    assert [(r.grant_id, r.match, r.flag) for r in rows] == [
        (grant.id, "grant", "outside_grant"),
        (grant.id, "grant", "outside_grant"),
        (grant.id, "grant", "outside_grant"),
        (None, "out_of_band", None),
    ]
    assert _audit_kinds(sqlite_db) == ["connection.refused"] * 3 + ["connection.out_of_band"]
    with sqlite_db.transaction() as session:
        [audited] = audit_query(session, since=t0 - timedelta(days=1), grant_id=grant.id)
    assert [(c.allowed, c.flag) for c in audited.connections] == [(False, "outside_grant")] * 3


def test_a_region_that_refuses_does_not_stop_the_others(sandbox, sqlite_db) -> None:
    sandbox.events.record(tunnel_record(MALLORY, at=now() - timedelta(minutes=1)))  # us-east-1
    sandbox.faults.update({"lookup_refused_regions": ["eu-west-1"]})  # first in the list
    try:
        rt = make_runtime(sqlite_db, regions=("eu-west-1", "us-east-1"))
        report = CloudTrailCollector(rt, account=ACCOUNT).poll()
    finally:
        sandbox.faults.clear()
    assert report.failed == {"eu-west-1/ec2-instance-connect.amazonaws.com": "AccessDeniedException"}
    assert report.new == 1  # us-east-1's event, collected all the same
    assert "us-east-1/ec2-instance-connect.amazonaws.com" in report.watermarks
    assert "eu-west-1/ec2-instance-connect.amazonaws.com" not in report.watermarks  # again next time
