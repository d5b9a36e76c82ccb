"""What the AWS sandbox reads off a WSGI request: SigV4 scope, headers, and ``RequestInfo``."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")

Headers = list[tuple[str, str]]
JsonHandler = Callable[["RequestInfo"], tuple[int, Any, bytes]]


@dataclass(frozen=True)
class RequestInfo:
    """What a registered JSON-target handler gets to see of a request."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # names as sent, e.g. "X-Amz-Target"
    body: bytes
    client_ip: str
    client_port: int
    access_key_id: str | None  # from the SigV4 Authorization header
    region: str | None


def credential_scope(environ: dict) -> tuple[str | None, str | None, str | None]:
    """(access key id, region, service) from a SigV4 Authorization header."""
    found = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    return (found.group(1), found.group(2), found.group(3)) if found else (None, None, None)


def request_headers(environ: dict) -> dict[str, str]:
    """The request's headers by their sent names, Content-Type and Content-Length included."""
    headers = {
        key[5:].replace("_", "-").title(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").title()] = environ[key]
    return headers
