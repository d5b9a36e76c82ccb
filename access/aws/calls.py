"""boto3 clients and the one throttling-aware retry wrapper every AWS call goes through."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from access.errors import AwsError

# What a boto3 call raises when AWS (or what answered in its place) failed it; the parser's
# error is not a BotoCoreError (an endpoint that answers HTML, say: a proxy, a wrong region).
AWS_FAILURES = (ClientError, BotoCoreError, ResponseParserError)

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "SlowDown",
        "ServiceFailure",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
    }
)

BOTO_CONFIG = BotoConfig(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=15,
    max_pool_connections=32,
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ("" for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_retryable(exc: BaseException) -> bool:
    """Throttling, 5xx and connection trouble are worth another try; the rest is final."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in THROTTLING_CODES or int(status) >= 500
    return isinstance(exc, BotoCoreError | ConnectionError | TimeoutError)


def with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 4,
    base_s: float = 0.2,
    cap_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `call`, retrying throttling and transient errors with full-jitter backoff.

    botocore's own retries run inside each attempt; this loop outlasts them when a
    throttling storm drains botocore's retry budget (FACTS.md, IAM).
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
            sleep(random.uniform(0, min(cap_s, base_s * 2**attempt)))
    raise AssertionError("unreachable")


class AwsClients:
    """Thread-safe cache of boto3 clients per (service, region), from one session."""

    def __init__(self, session: boto3.Session | None = None) -> None:
        self._session = session or boto3.Session()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._time_observers: list[Callable[[datetime], None]] = []

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                client = self._session.client(service, region_name=region, config=BOTO_CONFIG)  # type: ignore[call-overload]
                client.meta.events.register("after-call", self._after_call)
                self._clients[key] = client
            return self._clients[key]

    def on_server_time(self, observer: Callable[[datetime], None]) -> None:
        """Call `observer` with AWS's time (the `Date` header) after every answer."""
        self._time_observers.append(observer)

    def _after_call(self, http_response: Any = None, **_kwargs: Any) -> None:
        if not self._time_observers or http_response is None:
            return
        raw = http_response.headers.get("Date")
        try:
            at = parsedate_to_datetime(raw) if raw else None
        except (TypeError, ValueError):
            at = None
        if at is not None:
            for observer in self._time_observers:
                observer(at)

    def ec2(self, region: str) -> Any:
        return self.client("ec2", region)

    def iam(self) -> Any:
        return self.client("iam", "us-east-1")

    def cloudtrail(self, region: str) -> Any:
        return self.client("cloudtrail", region)


@contextmanager
def aws_failures_as(what: str) -> Iterator[None]:
    """Turn an AWS failure that outlasted the retries into an `AwsError` saying what failed."""
    try:
        yield
    except AWS_FAILURES as exc:
        code = (error_code(exc) if isinstance(exc, ClientError) else None) or type(exc).__name__
        message = f"AWS refused or failed {what} ({code}); nothing was changed, try again shortly"
        raise AwsError(message) from exc
