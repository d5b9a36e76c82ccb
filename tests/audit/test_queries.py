"""`audit_query`, the CLI and the Slack builders, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from access.audit.cloudtrail_models import CloudTrailEvent
from access.audit.queries import audit_query
from access.cli.main import main
from access.errors import InvalidInput
from bot.audit_blocks import AuditAction, AuditQuery, audit_blocks, audit_text, parse_audit_args
from tests.audit.conftest import make_grant, now, role_person

ALICE, BOB = role_person("alice"), role_person("bob")


def _event(grant, at, name="OpenTunnel", error=None, n=0) -> CloudTrailEvent:
    return CloudTrailEvent(
        event_id=f"{grant.id}-{n}",
        event_name=name,
        event_source="ec2-instance-connect.amazonaws.com",
        event_time=at,
        region="us-east-1",
        account_id="123456789012",
        principal_arn=grant.principal_arn,
        source_ip="203.0.113.7",
        user_agent="aws-cli/2",
        error_code=error,
        instance_id=grant.instance_id,
        grant_id=grant.id,
        match="grant",
        collected_at=at,
        raw={},
    )


@pytest.fixture
def estate(db):
    t0 = now()
    with db.transaction() as session:
        old = make_grant(session, ALICE, starts_at=t0 - timedelta(days=10), instance_id="i-0000000000000old")
        a1 = make_grant(session, ALICE, starts_at=t0 - timedelta(hours=3))
        a2 = make_grant(session, ALICE, starts_at=t0 - timedelta(hours=2), revoked_at=t0 - timedelta(hours=1))
        b1 = make_grant(
            session,
            BOB,
            starts_at=t0 - timedelta(hours=1),
            requester_id="U0BOB",
            instance_id="i-0bbb1234567890bbb",
            approvers=(),
            break_glass=True,
        )
        session.add_all(
            [
                _event(a1, t0 - timedelta(hours=3) + timedelta(minutes=1), "SendSSHPublicKey"),
                _event(a1, t0 - timedelta(hours=3) + timedelta(minutes=2), n=1),
                _event(a2, t0 - timedelta(minutes=30), error="AccessDenied", n=2),
            ]
        )
    return {"t0": t0, "old": old, "a1": a1, "a2": a2, "b1": b1, "db": db}


def test_queries_by_instance_user_grant_and_since(estate) -> None:
    t0, db = estate["t0"], estate["db"]
    week = t0 - timedelta(days=7)
    with db.transaction() as session:
        by_instance = audit_query(session, since=week, instance_id="i-0abc1234567890def")
        by_user = audit_query(session, since=week, user_id="U0BOB")
        by_arn = audit_query(session, since=t0 - timedelta(days=30), user_id=ALICE.principal_arn)
        by_grant = audit_query(session, since=week, grant_id=estate["a1"].id)
        page = audit_query(session, since=week, limit=1, offset=1)

    assert [g.grant_id for g in by_instance] == [estate["a2"].id, estate["a1"].id]
    assert [(c.event_name, c.allowed) for c in by_grant[0].connections] == [
        ("SendSSHPublicKey", True),
        ("OpenTunnel", True),
    ]
    revoked = by_instance[0]
    assert revoked.revoked_at is not None
    assert [(c.allowed, c.error_code) for c in revoked.connections] == [(False, "AccessDenied")]
    assert revoked.approvers == ["U0BOSS"]
    [bob] = by_user
    assert (bob.break_glass, bob.auto_approved, bob.approvers) == (True, True, [])
    assert len(by_arn) == 3  # the 10-day-old one too
    assert [g.grant_id for g in page] == [estate["a2"].id]


def test_cli_prints_table_json_and_csv(estate, capsys) -> None:
    url = ["--database-url", estate["db"].url]
    grant = estate["a1"].id
    mallory = role_person("mallory")
    with estate["db"].transaction() as session:  # EICE use on the same instance that no grant explains
        stray = _event(estate["a1"], estate["t0"] - timedelta(minutes=5), n=9)
        stray.principal_arn, stray.grant_id, stray.match = mallory.principal_arn, None, "out_of_band"
        session.add(stray)

    assert main(["audit", *url, "--grant", grant, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [g["grant_id"] for g in document["grants"]] == [grant]
    assert len(document["grants"][0]["connections"]) == 2

    assert main(["audit", *url, "--instance", "i-0abc1234567890def", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["error_code"] for r in rows} == {"", "AccessDenied"}
    [out_of_band] = [r for r in rows if r["flag"] == "out_of_band"]  # kept in every format
    assert (out_of_band["grant_id"], out_of_band["principal_arn"]) == ("", mallory.principal_arn)
    assert out_of_band["instance_id"] == "i-0abc1234567890def"
    assert main(["audit", *url, "--instance", "i-0abc1234567890def", "--format", "json"]) == 0
    assert [c["principal_arn"] for c in json.loads(capsys.readouterr().out)["out_of_band"]] == [
        mallory.principal_arn
    ]

    assert main(["audit", *url, "--user", "U0BOB", "--since", "1d"]) == 0
    assert "BREAK-GLASS" in capsys.readouterr().out
    assert main(["audit", *url, "--since", "soon"]) == 2
    capsys.readouterr()
    for flags, said in (  # each used to print "no matching grants", as if there were none
        (["--instance", "web-1"], "--instance 'web-1' is not an instance ID (i-...)"),
        (["--grant", "nope"], "--grant 'nope' is not a grant ID (g-...)"),
        (["--user", "bob"], "--user 'bob' is neither a Slack user ID (U...) nor an IAM principal ARN"),
        (["--offset", "-5"], "--offset cannot be negative"),
    ):
        assert main(["audit", *url, *flags]) == 2, flags
        captured = capsys.readouterr()
        assert said in captured.err and captured.out == "", (flags, captured.err)
    assert main(["audit", *url, "--user", mallory.principal_arn, "--format", "json"]) == 0


def test_slack_blocks_page_through_results(estate) -> None:
    with estate["db"].transaction() as session:
        results = audit_query(session, since=estate["t0"] - timedelta(days=30))
    query = AuditQuery(user_id="U0ALICE")

    first = audit_blocks(results, 0, 2, query=query, query_text="<@U0ALICE>")
    last = audit_blocks(results, 1, 2, query=query, query_text="<@U0ALICE>")

    assert first[0]["text"]["text"].startswith("Audit: <@U0ALICE>, last 7d")
    [nav] = [b for b in first if b["type"] == "actions"]
    assert [e["action_id"] for e in nav["elements"]] == [AuditAction.NEXT]
    assert json.loads(nav["elements"][0]["value"]) == {"q": "<@U0ALICE>", "page": 1}
    [nav] = [b for b in last if b["type"] == "actions"]
    assert [e["action_id"] for e in nav["elements"]] == [AuditAction.PREVIOUS]
    assert len(first) < 50 and len(last) < 50
    assert "page 1 of 2" in audit_text(results, 0, 2, query=query)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", AuditQuery()),
        ("i-0abc1234567890def", AuditQuery(instance_id="i-0abc1234567890def")),
        ("<@U0ALICE|alice> --since 30d", AuditQuery(user_id="U0ALICE", since=timedelta(days=30))),
        ("--since=2h g-k3v9q2m7xa", AuditQuery(grant_id="g-k3v9q2m7xa", since=timedelta(hours=2))),
    ],
)
def test_audit_arguments_are_read(text, expected) -> None:
    assert parse_audit_args(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("web-1", "is not an instance ID"),
        ("i-0abc1234567890def <@U0ALICE>", "not several"),
        ("--since", "needs a duration"),
        ("--since 1y", "cannot read duration"),
        ("--since 100d", "at most 90d"),
        ("--verbose", "unknown option"),
        ("@alice", "@-menu"),
    ],
)
def test_bad_audit_arguments_say_what_is_wrong(text, says) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_audit_args(text)
    assert says in raised.value.message
