"""Domain errors. Each carries a short message fit to show a person as it is."""

from __future__ import annotations


class AccessError(Exception):
    """Base class: something the person asked for cannot be done, and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(AccessError):
    """The input could not be understood (bad duration, port, id...)."""


class NotFound(AccessError):
    """An instance, endpoint, request or grant that does not exist."""


class Ambiguous(AccessError):
    """A name that matches more than one thing."""


class NotPermitted(AccessError):
    """The actor may not do this (not an approver, self-approval, not a requester...)."""


class Conflict(AccessError):
    """The thing already moved on (already decided, already revoked...)."""


class PolicyTooLarge(AccessError):
    """The grant policy would not fit IAM's inline policy size limits."""


class ConfigError(AccessError):
    """The configuration file is invalid; the message names the file and the key."""


class AwsError(AccessError):
    """An AWS call failed in a way the person should hear about."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An error's message as one line: its first, cut at `limit` (boto3, SQLAlchemy and
    parsers add the request, the SQL or the whole response body below it)."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
