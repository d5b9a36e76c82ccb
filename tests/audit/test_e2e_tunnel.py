"""Issue 5 end to end: a grant, two real SSH sessions, one refused tunnel after expiry.

Everything runs for real on loopback: the request is submitted and approved through the
workflows, the grant's policy lands in the sandbox's IAM, `eice ssh` (OpenSSH with the
project's own tunnel as ProxyCommand) reaches the instance's SSH server through the
OpenTunnel stand-in, the reaper revokes the grant at expiry, and the project's tunnel
client is refused after that. The sandbox records what CloudTrail would have seen; the
collector reads it back through LookupEvents, and the result must show up, exactly, in
the database, in `eice audit --format json` (a subprocess) and in `/eice audit` blocks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.credentials import Credentials
from sqlalchemy import select

from access.access_requests.prepare import RequestInput
from access.audit.cloudtrail_models import CloudTrailEvent
from access.audit.collector import CloudTrailCollector, collector_tick
from access.audit.models import AuditEvent
from access.audit.queries import audit_query
from access.audit.service import verify_chain
from access.aws.calls import AwsClients
from access.aws.iam import IamPolicies
from access.config.loader import parse_config
from access.config.permissions import Actor
from access.db import Database
from access.grants.models import Grant, GrantStatus
from access.runtime import Runtime
from access.scheduler.reaper import reap
from access.tunnel.client import TunnelSettings, open_tunnel
from access.tunnel.errors import TunnelRefused
from access.tunnel.target import TunnelTarget
from access.workflows import approve_request, submit_request
from bot.audit_blocks import audit_blocks, parse_audit_args
from sandbox.aws.account import bot_client, bot_session
from sandbox.aws.eice import TunnelServer
from sandbox.aws.instance_connect import InstanceConnectService
from sandbox.aws.seed import Estate, seed_estate
from sandbox.aws.server import AwsSandbox
from sandbox.aws.ssh_server import InstanceSshServers
from sandbox.stack import sandbox_config

EICE = [sys.executable, "-m", "access.cli.main"]
EICE_SOURCE = "ec2-instance-connect.amazonaws.com"
# Long enough for two `eice ssh` runs on a busy machine, short enough to wait out.
GRANT_DURATION = "20s"


@dataclass
class TunnelStack:
    """The AWS sandbox with endpoints, the OpenTunnel stand-in and an SSH server per instance."""

    aws: AwsSandbox
    tunnels: TunnelServer
    ssh: InstanceSshServers
    estate: Estate

    @property
    def dns_name(self) -> str:
        return f"127.0.0.1:{self.tunnels.port}"

    def alice(self) -> Credentials:
        """Fresh role-session credentials for alice (what she would get from SSO)."""
        sts = bot_client("sts", self.aws.url)
        c = sts.assume_role(RoleArn=self.estate.role_arns["alice"], RoleSessionName="alice")["Credentials"]
        return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])


@pytest.fixture(scope="module")
def stack() -> Iterator[TunnelStack]:
    aws = AwsSandbox().start()
    aws.reset()  # moto's state is process-wide; the estate's names must be free
    tunnels = TunnelServer(aws).start()
    instance_connect = InstanceConnectService(aws).install()
    ssh = InstanceSshServers(aws, instance_connect.keys).start()
    estate = seed_estate(aws)
    ssh.serve_running()
    yield TunnelStack(aws, tunnels, ssh, estate)
    ssh.stop()
    tunnels.stop()
    aws.stop()


@pytest.fixture
def rt(stack: TunnelStack, db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The bot's runtime on the sandbox's config, with an empty CloudTrail to start from."""
    for key, value in stack.aws.env().items():
        monkeypatch.setenv(key, value)
    stack.aws.events.clear()
    config = parse_config(sandbox_config(stack.estate.account_id), source="sandbox eice.toml")
    clients = AwsClients(bot_session())
    runtime = Runtime(db=db, config=config, clients=clients, iam=IamPolicies(clients))
    yield runtime
    for name in runtime.iam.list_grant_names(stack.estate.role_arns["alice"]):
        runtime.iam.delete(stack.estate.role_arns["alice"], name)


def _user_env(stack: TunnelStack, credentials: Credentials, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(stack.aws.env())
    env.update(
        AWS_ACCESS_KEY_ID=credentials.access_key,
        AWS_SECRET_ACCESS_KEY=credentials.secret_key,
        AWS_SESSION_TOKEN=credentials.token or "",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        EICE_TUNNEL_SCHEME="ws",
    )
    env.update(extra)
    return env


def _grant(rt: Runtime, grant_id: str) -> Grant:
    with rt.db.transaction() as session:
        grant = session.get(Grant, grant_id)
        assert grant is not None
        session.expunge(grant)
        return grant


def _approved_grant(rt: Runtime) -> Grant:
    """web-1 is prod: alice asks, bob and carol approve, the grant is applied."""
    asked = submit_request(
        rt,
        RequestInput(
            requester=Actor("U0ALICE"), instance_ref="web-1", duration=GRANT_DURATION, reason="disk alarm"
        ),
    )
    approve_request(rt, asked.request.id, Actor("U0BOB"))
    outcome = approve_request(rt, asked.request.id, Actor("U0CAROL"))
    assert outcome.approved and outcome.grant_id
    grant = _grant(rt, outcome.grant_id)
    assert grant.status == GrantStatus.ACTIVE
    return grant


def _eice_ssh(env: dict[str, str], grant: Grant) -> None:
    """`eice ssh <instance> --expires <grant end> -- hostname`, as the approval DM says."""
    expires = grant.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = subprocess.run(
        [*EICE, "ssh", grant.instance_id, "--expires", expires, "--", "hostname"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "web-1\n"), done.stderr


def _refused_tunnel(stack: TunnelStack, grant: Grant, credentials: Credentials) -> TunnelRefused:
    settings = TunnelSettings(
        target=TunnelTarget(
            region=grant.region,
            endpoint_id=grant.endpoint_id,
            dns_name=stack.dns_name,
            private_ip=grant.private_ip,
            remote_port=grant.port,
            instance_id=grant.instance_id,
        ),
        credentials_provider=lambda: credentials,
        scheme="ws",
    )
    with pytest.raises(TunnelRefused) as refused:
        asyncio.run(open_tunnel(settings))
    return refused.value


def _wait_past(moment: datetime, margin_s: float) -> None:
    """Sleep until `margin_s` after `moment` (CloudTrail's eventTime has whole seconds)."""
    left = (moment - datetime.now(UTC)).total_seconds() + margin_s
    if left > 0:
        time.sleep(left)


def test_two_ssh_sessions_and_a_refused_tunnel_are_exactly_what_the_grant_shows(
    stack: TunnelStack, rt: Runtime
) -> None:
    grant = _approved_grant(rt)
    credentials = stack.alice()
    env = _user_env(stack, credentials)
    _eice_ssh(env, grant)
    _eice_ssh(env, grant)
    assert datetime.now(UTC) < grant.expires_at, (
        "the sessions took longer than the grant; raise GRANT_DURATION"
    )

    _wait_past(grant.expires_at, 1.2)
    reaped = reap(rt)
    assert reaped.statuses == {grant.id: GrantStatus.REVOKED}
    assert rt.iam.list_grant_names(grant.principal_arn) == []
    refusal = _refused_tunnel(stack, grant, credentials)

    # What the sandbox recorded, as CloudTrail would have: alice's calls, in order.
    eice = [e for e in stack.aws.events.all() if e["eventSource"] == EICE_SOURCE]
    assert [(e["eventName"], e.get("errorCode")) for e in eice] == [
        ("SendSSHPublicKey", None),
        ("OpenTunnel", None),
        ("SendSSHPublicKey", None),
        ("OpenTunnel", None),
        ("OpenTunnel", refusal.code),
    ]
    assert {e["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] for e in eice} == {
        grant.principal_arn
    }

    report = collector_tick(rt, CloudTrailCollector(rt))

    assert (report["new"], report["matched"], report["out_of_band"], report["bot_iam"]) == (7, 5, 0, 2)
    final = _grant(rt, grant.id)
    with rt.db.transaction() as session:
        rows = list(session.scalars(select(CloudTrailEvent).order_by(CloudTrailEvent.id)))
        audit = list(
            session.scalars(
                select(AuditEvent).where(
                    AuditEvent.kind.like("connection.%") | (AuditEvent.kind == "key.pushed")
                )
            )
        )
        assert verify_chain(session).ok
    # Every row the collector kept belongs to this grant: its five connections and the
    # bot's own PutRolePolicy / DeleteRolePolicy (matched by their request IDs).
    assert {r.grant_id for r in rows} == {grant.id}
    # Each EICE call the sandbox recorded is there once, with the refused one flagged.
    expected = {
        e["eventID"]: (e["eventName"], e.get("errorCode"), "after_expiry" if "errorCode" in e else None)
        for e in eice
    }
    connections = [r for r in rows if r.match == "grant"]
    assert len(connections) == len(expected)
    assert {r.event_id: (r.event_name, r.error_code, r.flag) for r in connections} == expected
    assert sorted((r.event_name, r.aws_request_id) for r in rows if r.match == "bot_iam") == [
        ("DeleteRolePolicy", final.delete_request_id),
        ("PutRolePolicy", final.put_request_id),
    ]
    assert sorted((a.kind, a.grant_id) for a in audit) == sorted(
        [("key.pushed", grant.id)] * 2
        + [("connection.opened", grant.id)] * 2
        + [("connection.refused", grant.id)]
    )

    # `eice audit --grant <id> --format json`, as an operator would run it.
    done = subprocess.run(
        [*EICE, "audit", "--grant", grant.id, "--format", "json"],
        env=_user_env(stack, credentials, EICE_DATABASE_URL=rt.db.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    [shown] = document["grants"]
    assert (shown["grant_id"], shown["requester_id"], shown["approvers"], shown["status"]) == (
        grant.id,
        "U0ALICE",
        ["U0BOB", "U0CAROL"],
        GrantStatus.REVOKED,
    )
    listed = shown["connections"]
    assert len(listed) == len(expected)
    assert {c["event_id"]: (c["event_name"], c["error_code"], c["flag"]) for c in listed} == expected
    assert [c["allowed"] for c in listed] == [c["error_code"] is None for c in listed]
    assert [c["at"] for c in listed] == sorted(c["at"] for c in listed)
    assert listed[-1]["error_code"] == refusal.code  # the refusal came strictly last
    assert document["out_of_band"] == []

    # `/eice audit <grant-id>`: the blocks the bot renders from the same query.
    query = parse_audit_args(grant.id)
    with rt.db.transaction() as session:
        results = audit_query(
            session, since=datetime.now(UTC) - query.since, grant_id=query.grant_id, limit=10
        )
    blocks = audit_blocks(results, 0, 10, query=query, query_text=grant.id)
    text = "\n".join(_texts(blocks))
    assert grant.id in text and "approved by <@U0BOB>, <@U0CAROL>" in text
    lines = _connection_lines(blocks)
    denied = ":no_entry: "
    assert sorted(
        (line.removeprefix(denied).split()[2], not line.startswith(denied)) for line in lines
    ) == sorted((name, code is None) for name, code, _ in expected.values())
    assert [line.startswith(denied) for line in lines] == [False] * 4 + [True]
    assert all(line.endswith(" allowed") for line in lines[:4])
    assert lines[-1].endswith(f"DENIED {refusal.code} [after_expiry]")


def _texts(blocks: list[dict[str, Any]]) -> Iterator[str]:
    for block in blocks:
        if "text" in block:
            yield block["text"]["text"]
        for element in block.get("elements", []):
            if "text" in element and isinstance(element["text"], str):
                yield element["text"]


def _connection_lines(blocks: list[dict[str, Any]]) -> list[str]:
    """The connection lines of the one grant shown (a context block after its section)."""
    contexts = [b for b in blocks if b["type"] == "context"]
    # The first context is the "N grants, page x of y" line; the second the connections.
    assert len(contexts) == 2
    return str(contexts[1]["elements"][0]["text"]).splitlines()
