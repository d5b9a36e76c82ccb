"""Audit test fixtures: the AWS sandbox over HTTP, a SQLite file, a real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from access.access_requests.models import AccessRequest, Approval
from access.audit.cloudtrail_models import CloudTrailEvent
from access.audit.models import AuditEvent
from access.aws.calls import AwsClients
from access.aws.iam import IamPolicies
from access.config.model import Config
from access.db import Base, Database
from access.grants.models import Grant
from access.grants.policy import policy_name
from access.ids import new_id
from access.migrate import upgrade
from access.outbox.models import OutboxMessage
from access.runtime import Runtime
from sandbox.aws.account import bot_session
from sandbox.aws.events import cloudtrail_record
from sandbox.aws.server import BOT_ACCESS_KEY_ID, BOT_SECRET_ACCESS_KEY, AwsSandbox

ACCOUNT = "123456789012"
EICE = "ec2-instance-connect.amazonaws.com"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", BOT_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", BOT_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never a real endpoint


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsSandbox]:
    """A sandbox of our own per test (its event log and LookupEvents limit are fresh)."""
    with AwsSandbox() as running:
        for key, value in running.env().items():
            monkeypatch.setenv(key, value)
        yield running


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session on the PostgreSQL at EICE_TEST_POSTGRES_URL."""
    base = make_url(os.environ.get("EICE_TEST_POSTGRES_URL", DEFAULT_PG))
    name = f"eice_audit_{uuid.uuid4().hex[:10]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_database(path: Any) -> Database:
    url = f"sqlite:///{path}"
    upgrade(url)
    return Database(url)


def postgres_database(url: str) -> Database:
    db = Database(url)
    # Every table but the installation's identity, which the migration wrote once.
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name != "installation")
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return db


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    """The schema, built by the migrations, on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        database = sqlite_database(tmp_path / "audit.sqlite")
    else:
        database = postgres_database(request.getfixturevalue("postgres_url"))
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Any) -> Iterator[Database]:
    database = sqlite_database(tmp_path / "audit.sqlite")
    yield database
    database.dispose()


def make_runtime(db: Database, regions: tuple[str, ...] = ("us-east-1",), deployment: str = "") -> Runtime:
    clients = AwsClients(bot_session())
    config = Config.model_validate({"aws": {"regions": list(regions), "deployment": deployment}})
    return Runtime(db=db, config=config, clients=clients, iam=IamPolicies(clients))


@dataclass(frozen=True)
class Person:
    """Someone with an IAM identity: a role they assume, or an IAM user."""

    name: str
    principal_arn: str
    identity: dict[str, Any]


def role_person(name: str) -> Person:
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/eice/{name}"
    return Person(
        name,
        role_arn,
        {
            "type": "AssumedRole",
            "principalId": f"AROAEXAMPLE{name.upper()}:{name}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{name}-session",
            "accountId": ACCOUNT,
            "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": f"AROAEXAMPLE{name.upper()}",
                    "arn": role_arn,
                    "accountId": ACCOUNT,
                    "userName": name,
                },
                "attributes": {"creationDate": "2025-01-01T00:00:00Z", "mfaAuthenticated": "false"},
            },
        },
    )


def user_person(name: str) -> Person:
    arn = f"arn:aws:iam::{ACCOUNT}:user/{name}"
    return Person(
        name,
        arn,
        {
            "type": "IAMUser",
            "principalId": f"AIDAEXAMPLE{name.upper()}",
            "arn": arn,
            "accountId": ACCOUNT,
            "accessKeyId": "AKIAEXAMPLE",
            "userName": name,
        },
    )


def make_grant(
    session: Any,
    person: Person,
    *,
    starts_at: datetime,
    minutes: int = 30,
    instance_id: str = "i-0abc1234567890def",
    endpoint_id: str = "eice-0123456789abcdef0",
    private_ip: str = "10.0.1.4",
    port: int = 22,
    os_user: str = "ec2-user",
    requester_id: str = "U0ALICE",
    approvers: tuple[str, ...] = ("U0BOSS",),
    break_glass: bool = False,
    revoked_at: datetime | None = None,
    status: str = "active",
    created_at: datetime | None = None,
) -> Grant:
    """An approved request and its grant, as the flows would have left them."""
    created = created_at or starts_at
    request = AccessRequest(
        id=new_id("r"),
        status="approved",
        requester_id=requester_id,
        requester_name=person.name,
        principal_arn=person.principal_arn,
        account_id=ACCOUNT,
        region="us-east-1",
        instance_id=instance_id,
        instance_name="web-1",
        endpoint_id=endpoint_id,
        endpoint_dns="eice.example",
        private_ip=private_ip,
        port=port,
        os_user=os_user,
        duration_s=minutes * 60,
        reason="fixing the disk alarm",
        approvers=list(approvers),
        approvals_required=max(1, len(approvers)),
        approvals_count=len(approvers),
        auto_approved=not approvers,
        break_glass=break_glass,
        created_at=created,
        approval_deadline=created + timedelta(minutes=30),
        decided_at=created,
    )
    session.add(request)
    session.flush()
    for approver in approvers:
        session.add(Approval(request_id=request.id, approver_id=approver, created_at=created))
    grant_id = new_id("g")
    grant = Grant(
        id=grant_id,
        request_id=request.id,
        status=status,
        requester_id=requester_id,
        principal_arn=person.principal_arn,
        policy_name=policy_name(grant_id),
        policy_document={},
        account_id=ACCOUNT,
        region="us-east-1",
        instance_id=instance_id,
        endpoint_id=endpoint_id,
        private_ip=private_ip,
        port=port,
        os_user=os_user,
        overshoot_s=300,
        break_glass=break_glass,
        created_at=created,
        starts_at=starts_at,
        expires_at=starts_at + timedelta(minutes=minutes),
        revoked_at=revoked_at,
    )
    session.add(grant)
    session.flush()
    return grant


def tunnel_record(
    person: Person,
    *,
    at: datetime,
    endpoint_id: str = "eice-0123456789abcdef0",
    private_ip: str = "10.0.1.4",
    port: int = 22,
    error_code: str | None = None,
    region: str = "us-east-1",
) -> dict[str, Any]:
    """An OpenTunnel record as CloudTrail writes it."""
    return cloudtrail_record(
        event_source=EICE,
        event_name="OpenTunnel",
        region=region,
        identity=person.identity,
        source_ip="203.0.113.7",
        user_agent="aws-cli/2.15.0 eice-access",
        request_parameters={
            "instanceConnectEndpointId": endpoint_id,
            "remotePort": str(port),
            "privateIpAddress": private_ip,
            "maxTunnelDuration": "1800",
        },
        response_elements=None,
        resources=[
            {
                "type": "AWS::EC2::InstanceConnectEndpoint",
                "ARN": f"arn:aws:ec2:{region}:{ACCOUNT}:instance-connect-endpoint/{endpoint_id}",
            }
        ],
        error_code=error_code,
        error_message="Access denied" if error_code else None,
        at=at,
        account_id=ACCOUNT,
    )


def ssh_key_record(
    person: Person,
    *,
    at: datetime,
    instance_id: str = "i-0abc1234567890def",
    os_user: str = "ec2-user",
    old_shape: bool = False,
    error_code: str | None = None,
) -> dict[str, Any]:
    """A SendSSHPublicKey record, in today's shape or the old documented one."""
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExample test"
    params: dict[str, Any] = (
        {"instanceId": instance_id, "osUser": os_user, "SSHKey": {"publicKey": key}}
        if old_shape
        else {"instanceId": instance_id, "instanceOSUser": os_user, "sSHPublicKey": key}
    )
    return cloudtrail_record(
        event_source=EICE,
        event_name="SendSSHPublicKey",
        region="us-east-1",
        identity=person.identity,
        source_ip="203.0.113.7",
        user_agent="aws-cli/2.15.0",
        request_parameters=params,
        response_elements=None if error_code else {"requestId": str(uuid.uuid4()), "success": True},
        error_code=error_code,
        at=at,
        account_id=ACCOUNT,
    )


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def stored_events(db: Database) -> list[CloudTrailEvent]:
    """The collected CloudTrail events, oldest first."""
    with db.transaction() as session:
        return list(session.scalars(select(CloudTrailEvent).order_by(CloudTrailEvent.event_time)))


def outbox_of(db: Database, kind: str) -> list[OutboxMessage]:
    """The queued Slack messages of one kind."""
    with db.transaction() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)))


def audit_kinds(db: Database) -> list[str]:
    """The audit rows' kinds, in chain order."""
    with db.transaction() as session:
        return [row.kind for row in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
