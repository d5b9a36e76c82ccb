"""The AWS sandbox's own ``/_sandbox/...`` endpoints: events, counters, faults, CloudTrail delay, reset."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sandbox.aws.request_info import Headers

if TYPE_CHECKING:
    from sandbox.aws.server import AwsSandbox


def handle_admin(sandbox: AwsSandbox, method: str, path: str, body: bytes) -> tuple[int, Headers, bytes]:
    """Answer one admin request with JSON (404 for an unknown path, 400 for a bad body).

    Args:
        sandbox: the sandbox to read or change.
        method: the HTTP method.
        path: the request path, starting ``/_sandbox/``.
        body: the JSON body of a POST, or empty.
    """
    try:
        data = json.loads(body) if body else {}
        if (method, path) == ("GET", "/_sandbox/events"):
            answer: Any = sandbox.events.all()
        elif (method, path) == ("GET", "/_sandbox/counters"):
            answer = sandbox.faults.counters.snapshot()
        elif (method, path) == ("GET", "/_sandbox/faults"):
            answer = sandbox.faults.as_dict()
        elif (method, path) == ("POST", "/_sandbox/faults"):
            sandbox.faults.update(data)
            answer = sandbox.faults.as_dict()
        elif (method, path) == ("POST", "/_sandbox/cloudtrail-delay"):
            sandbox.events.delay_s = float(data["delay_s"])
            answer = {"delay_s": sandbox.events.delay_s}
        elif (method, path) == ("POST", "/_sandbox/reset"):
            sandbox.reset()
            answer = {"reset": True}
        else:
            return 404, [("Content-Type", "application/json")], b'{"error": "not found"}'
    except (ValueError, KeyError, TypeError) as error:
        payload = json.dumps({"error": str(error)}).encode()
        return 400, [("Content-Type", "application/json")], payload
    return 200, [("Content-Type", "application/json")], json.dumps(answer).encode()
