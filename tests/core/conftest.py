"""Fixtures for the core tests: the AWS sandbox over HTTP, real databases, a Runtime."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from access.aws.calls import AwsClients
from access.aws.iam import IamPolicies
from access.clock import Clock, SystemClock
from access.config.loader import parse_config
from access.config.model import Config
from access.db import Database
from access.runtime import Runtime
from sandbox.aws.account import bot_session
from sandbox.aws.seed import Estate, seed_estate
from sandbox.aws.server import AwsSandbox
from tests.dbs import database

ACCOUNT = "123456789012"

CONFIG_TOML = f"""
[aws]
regions = ["us-east-1"]

[defaults]
approvers = ["U0ALICE", "U0BOB", "U0CAROL", "S0ONCALL"]
approvals_required = 1
admins = ["U0ADMIN"]
approvals_channel = "C0APPROVALS"
audit_channel = "C0AUDIT"
max_duration = "4h"
approval_timeout = "30m"

[[rules]]
name = "prod-db"
match = {{ tags = {{ env = "prod", Name = "db-1" }} }}
approvals_required = 2

[[rules]]
name = "dev"
match = {{ tags = {{ env = "dev" }} }}
auto_approve = true

[principals]
U0ALICE = "arn:aws:iam::{ACCOUNT}:role/eice/alice"
U0BOB = "arn:aws:iam::{ACCOUNT}:role/eice/bob"
U0CAROL = "arn:aws:iam::{ACCOUNT}:role/eice/carol"
U0DAVE = "arn:aws:iam::{ACCOUNT}:user/dave"
U0GHOST = "arn:aws:iam::{ACCOUNT}:role/eice/ghost"

[break_glass]
enabled = true
max_duration = "1h"
"""


@pytest.fixture(scope="session")
def aws() -> Iterator[AwsSandbox]:
    """The AWS sandbox for the whole session; boto3 in this process points at it."""
    saved = dict(os.environ)
    with AwsSandbox() as sandbox:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(sandbox.env())
        os.environ["AWS_CONFIG_FILE"] = "/dev/null"
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
        yield sandbox
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def estate(aws: AwsSandbox) -> Estate:
    return seed_estate(aws)


@pytest.fixture(scope="session")
def config() -> Config:
    return parse_config(CONFIG_TOML, source="test eice.toml")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


def make_runtime(db_url: str, config: Config, *, clock: Clock | None = None, **kwargs: Any) -> Runtime:
    session = bot_session()
    clients = AwsClients(session)
    return Runtime(
        db=Database(db_url),
        config=config,
        clients=clients,
        iam=IamPolicies(clients),
        clock=clock or SystemClock(),
        **kwargs,
    )


@pytest.fixture
def rt(aws: AwsSandbox, estate: Estate, db_url: str, config: Config) -> Iterator[Runtime]:
    runtime = make_runtime(db_url, config, claim_lease_s=1.0, reaper_interval_s=0.5)
    yield runtime
    # Leave IAM clean for the next test: no grant policy may survive a test.
    for arn in [*estate.role_arns.values(), estate.user_arn]:
        for name in runtime.iam.list_grant_names(arn):
            runtime.iam.delete(arn, name)
    runtime.db.dispose()


def iam_grant_policies(rt: Runtime, principal_arn: str) -> list[str]:
    return rt.iam.list_grant_names(principal_arn)
