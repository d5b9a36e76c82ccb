"""Matched events that deserve a second look: after expiry, after a revoke, beside the grant."""

from __future__ import annotations

from datetime import timedelta

from access.audit.collector import CloudTrailCollector
from access.audit.queries import audit_query
from tests.audit.conftest import (
    audit_kinds,
    make_grant,
    make_runtime,
    now,
    role_person,
    ssh_key_record,
    stored_events,
    tunnel_record,
)

ALICE = role_person("alice")


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

    overshoot, refused, through = stored_events(sqlite_db)
    assert (overshoot.grant_id, overshoot.error_code, overshoot.flag) == (grant.id, None, "after_expiry")
    assert (refused.grant_id, refused.match, refused.flag) == (grant.id, "grant", "after_expiry")
    assert refused.error_code == "AccessDenied"
    assert (through.grant_id, through.match) == (None, "out_of_band")
    assert audit_kinds(sqlite_db) == ["connection.opened", "connection.refused", "connection.out_of_band"]
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

    opened, just_before, late, refused = stored_events(sqlite_db)
    assert (opened.grant_id, opened.flag) == (grant.id, None)
    assert (just_before.grant_id, just_before.flag) == (grant.id, None)
    assert (late.grant_id, late.error_code, late.flag) == (grant.id, None, "after_revoke")
    assert (refused.grant_id, refused.error_code, refused.flag) == (grant.id, "AccessDenied", "after_revoke")


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
    rows = stored_events(sqlite_db)
    assert [(r.grant_id, r.match, r.flag) for r in rows] == [
        (grant.id, "grant", "outside_grant"),
        (grant.id, "grant", "outside_grant"),
        (grant.id, "grant", "outside_grant"),
        (None, "out_of_band", None),
    ]
    assert audit_kinds(sqlite_db) == ["connection.refused"] * 3 + ["connection.out_of_band"]
    with sqlite_db.transaction() as session:
        [audited] = audit_query(session, since=t0 - timedelta(days=1), grant_id=grant.id)
    assert [(c.allowed, c.flag) for c in audited.connections] == [(False, "outside_grant")] * 3


def test_a_refusal_in_the_second_of_the_expiry_is_after_it(sandbox, sqlite_db) -> None:
    """The policy allows times before the expiry (`DateLessThan`) and CloudTrail stamps whole
    seconds: refused in the expiry's own second is refused because the grant had ended."""
    t0 = now()
    expires = t0 - timedelta(minutes=10)
    with sqlite_db.transaction() as session:
        grant = make_grant(session, ALICE, starts_at=expires - timedelta(minutes=30), minutes=30)
        grant.revoked_at, grant.status = expires + timedelta(milliseconds=25), "revoked"  # reaped on time
    assert grant.expires_at == expires
    sandbox.events.record(tunnel_record(ALICE, at=expires - timedelta(seconds=1)))
    sandbox.events.record(ssh_key_record(ALICE, at=expires, error_code="AccessDenied"))

    CloudTrailCollector(make_runtime(sqlite_db)).poll()

    last_allowed, refused = stored_events(sqlite_db)
    assert (last_allowed.grant_id, last_allowed.flag) == (grant.id, None)
    assert (refused.grant_id, refused.error_code, refused.flag) == (grant.id, "AccessDenied", "after_expiry")
