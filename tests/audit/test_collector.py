"""The CloudTrail collector against the sandbox's LookupEvents, over HTTP: matching,
out-of-band use, paging under the rate limit and the bot's own IAM calls. Flags are in
`test_collector_flags`, where polls start in `test_collector_watermarks`."""

from __future__ import annotations

import contextlib
import json
import math
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from access.audit.cloudtrail_models import CloudTrailEvent
from access.audit.collector import CloudTrailCollector, chain_witness, collector_tick
from access.audit.matching import parse_event
from access.audit.queries import audit_query, out_of_band_events
from access.audit.service import chain_head, verify_chain
from access.audit.store import PollReport, store_page
from access.grants.policy import policy_name
from access.ids import new_id
from tests.audit.conftest import (
    ACCOUNT,
    audit_kinds,
    make_grant,
    make_runtime,
    now,
    outbox_of,
    role_person,
    ssh_key_record,
    stored_events,
    tunnel_record,
    user_person,
)

ALICE = role_person("alice")
BOB = user_person("bob")
MALLORY = role_person("mallory")


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
    rows = stored_events(db)
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
    assert audit_kinds(db) == ["key.pushed", "connection.opened", "key.pushed"]
    assert {m.grant_id for m in outbox_of(db, "audit.connection")} == {alice.id, bob.id}
    with db.transaction() as session:
        assert verify_chain(session).ok
        found = audit_query(session, since=t0 - timedelta(days=1), grant_id=alice.id, limit=10)
    assert [c.event_name for c in found[0].connections] == ["SendSSHPublicKey", "OpenTunnel"]
    assert found[0].connections[1].source_ip == "203.0.113.7"
    assert found[0].approvers == ["U0BOSS"]


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
    [announced] = outbox_of(sqlite_db, "audit.out_of_band")
    assert len(announced.payload["events"]) == 3
    assert {e["principal_arn"] for e in announced.payload["events"]} == {
        MALLORY.principal_arn,
        ALICE.principal_arn,
    }
    with sqlite_db.transaction() as session:
        strays = out_of_band_events(session, since=t0 - timedelta(hours=1), instance_id="i-0abc1234567890def")
    # The tunnel names only endpoint and IP; the collector found the instance behind them.
    assert len(strays) == 3
    assert audit_kinds(sqlite_db).count("connection.out_of_band") == 3


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
    [row] = stored_events(sqlite_db)
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
    [row] = stored_events(sqlite_db)
    assert (row.event_name, row.match, row.grant_id) == ("PutRolePolicy", "bot_iam", grant.id)


def test_chain_witness_queues_the_head_for_the_audit_channel(sandbox, sqlite_db) -> None:
    rt = make_runtime(sqlite_db)
    sandbox.events.record(tunnel_record(MALLORY, at=now()))
    CloudTrailCollector(rt, account=ACCOUNT).poll()
    payload = chain_witness(rt)
    [message] = outbox_of(sqlite_db, "audit.chain_head")
    with sqlite_db.transaction() as session:
        assert (message.payload["seq"], message.payload["hash"]) == chain_head(session)
    assert payload["seq"] == 1


def test_two_collectors_storing_the_same_page_at_once_keep_it_once(sandbox, db) -> None:
    """Two servers of one installation both collect: a page stored by both at the same moment
    is kept once, and the second collector carries on instead of failing on the event-ID key."""
    t0 = now()
    with db.transaction() as session:
        make_grant(session, ALICE, starts_at=t0 - timedelta(minutes=20))
    records = [tunnel_record(ALICE, at=t0 - timedelta(minutes=m)) for m in (3, 2, 1)]
    page = [parse_event({"CloudTrailEvent": json.dumps(r)}) for r in records]
    clock = make_runtime(db).clock
    second = PollReport()
    failures: list[BaseException] = []

    def store_again() -> None:
        try:
            with db.transaction() as session:
                store_page(session, page, clock=clock, grace=timedelta(hours=1), report=second)
        except BaseException as exc:
            failures.append(exc)

    first = PollReport()
    with db.transaction() as session:
        store_page(session, page, clock=clock, grace=timedelta(hours=1), report=first)
        racer = threading.Thread(target=store_again)
        racer.start()
        racer.join(1.0)  # it waits for this transaction: same events, not committed yet
        assert racer.is_alive()
    racer.join(30)
    assert failures == []
    assert (first.new, second.new) == (3, 0)
    assert len(stored_events(db)) == 3
    assert audit_kinds(db).count("connection.opened") == 3
