"""Fixtures for the AWS sandbox tests: real HTTP, plain boto3, never a real account."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from sandbox.aws.server import BOT_ACCESS_KEY_ID, BOT_SECRET_ACCESS_KEY, AwsSandbox

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})

ClientFactory = Callable[..., Any]


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", BOT_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", BOT_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[AwsSandbox]:
    """One sandbox for tests that only add uniquely named things."""
    with AwsSandbox() as running:
        yield running


@pytest.fixture
def fresh_sandbox() -> Iterator[AwsSandbox]:
    """A sandbox with its own event log, endpoints, faults and limits; moto state is shared."""
    with AwsSandbox() as running:
        running.faults.lookup_events_rate_per_s = 1000.0
        yield running


def make_client(
    sandbox: AwsSandbox,
    service: str,
    *,
    region: str = "us-east-1",
    key: str = BOT_ACCESS_KEY_ID,
    secret: str = BOT_SECRET_ACCESS_KEY,
    token: str | None = None,
) -> Any:
    """A plain boto3 client against the sandbox, without botocore's retries."""
    return boto3.client(
        service,
        endpoint_url=sandbox.url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=NO_RETRIES,
    )


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def client_for() -> ClientFactory:
    """make_client as a fixture: client_for(sandbox, "iam", key=..., secret=...)."""
    return make_client
