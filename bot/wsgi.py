"""The HTTP face of `eice serve --http`: `/slack/events` (Bolt), `/healthz`, `/metrics`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text

from access.runtime import Runtime
from bot.metrics import BotMetrics

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]
MAX_BODY = 1_000_000


class HealthProbe:
    """What `/healthz` reports: database reachable, scheduler running, last reaper pass."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.scheduler_running: Callable[[], bool] = lambda: False
        self.last_reaper_pass: Callable[[], str | None] = lambda: None

    def check(self) -> tuple[bool, dict[str, Any]]:
        try:
            with self.rt.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            db_ok = True
        except Exception:
            db_ok = False
        running = self.scheduler_running()
        report = {
            "db": "ok" if db_ok else "unreachable",
            "scheduler": "running" if running else "stopped",
            "last_reaper_pass": self.last_reaper_pass(),
        }
        return db_ok and running, report


def _kind(body: bytes, content_type: str) -> str:
    """command / interaction / event, for the request counter (never the content).

    Only the form's field names are looked at, not decoded: this runs on the ack path, and
    decoding every value (a button payload is kilobytes of JSON) cost more than the ack.
    """
    if "json" in content_type:
        return "event"
    names = {field.partition(b"=")[0] for field in body.split(b"&", 50)[:50]}
    if b"payload" in names:
        return "interaction"
    return "command" if b"command" in names else "other"


class EiceWsgiApp:
    """A thin WSGI router in front of Bolt's WSGI adapter.

    Args:
        app: the Bolt app.
        health: the `/healthz` probe.
        metrics: the process's metrics.
        slack_events: serve `POST /slack/events` (not in Socket Mode, where Slack's events
            arrive over the socket and this app serves only `/healthz` and `/metrics`).
    """

    def __init__(
        self,
        app: App,
        health: HealthProbe,
        metrics: BotMetrics,
        *,
        slack_events: bool = True,
        signing_secret: str | None = None,
    ) -> None:
        self.bolt = SlackRequestHandler(app)
        self.health = health
        self.metrics = metrics
        self.slack_events = slack_events
        # Checked here, before Bolt reads the body: Bolt parses a body (and fails on a
        # malformed one, with a traceback) before its own signature check.
        self.verifier = SignatureVerifier(signing_secret) if signing_secret else None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        if path == "/slack/events" and method == "POST" and self.slack_events:
            return self._slack(environ, start_response)
        if path == "/healthz" and method == "GET":
            ok, report = self.health.check()
            return _reply(start_response, 200 if ok else 503, json.dumps(report).encode(), "application/json")
        if path == "/metrics" and method == "GET":
            return _reply(start_response, 200, self.metrics.render(), "text/plain; version=0.0.4")
        return _reply(start_response, 404, b'{"error": "not found"}', "application/json")

    def _signed(self, environ: dict[str, Any], body: bytes) -> bool:
        """Slack's signature over the body, checked without reading the body (any headers)."""
        if self.verifier is None:
            return True
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not (timestamp.isascii() and timestamp.isdigit()):
            return False
        try:
            return self.verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
        except Exception:  # not a signature at all
            return False

    def _slack(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return _reply(start_response, 413, b"", "text/plain")
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = _Body(body)
        kind = _kind(body, environ.get("CONTENT_TYPE", ""))
        if not self._signed(environ, body):
            self.metrics.requests.labels(kind=kind, status="401").inc()
            return _reply(start_response, 401, b'{"error": "invalid request"}', "application/json")
        status_holder: list[str] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status_holder.append(status)
            return start_response(status, headers)

        try:
            result = list(self.bolt(environ, capture))
        except Exception as exc:  # signed, yet not a request Bolt can read (a malformed payload)
            log.warning("refused a signed %s request Bolt cannot read: %s: %s", kind, type(exc).__name__, exc)
            self.metrics.requests.labels(kind=kind, status="400").inc()
            if status_holder:  # already answered: nothing more can be sent
                return []
            return _reply(start_response, 400, b'{"error": "malformed request"}', "application/json")
        status = status_holder[0].split()[0] if status_holder else "500"
        self.metrics.requests.labels(kind=kind, status=status).inc()
        self.metrics.ack_seconds.observe(time.perf_counter() - started)
        return result


class _Body:
    """A re-readable request body (we read it once for the length check and the counter)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size is None or size < 0 else self.pos + size
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk


def _reply(start_response: StartResponse, status: int, body: bytes, ctype: str) -> list[bytes]:
    reason = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        413: "Payload Too Large",
        503: "Service Unavailable",
    }
    start_response(
        f"{status} {reason.get(status, '')}".strip(),
        [("Content-Type", ctype), ("Content-Length", str(len(body)))],
    )
    return [body]
