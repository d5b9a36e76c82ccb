"""The Lambda handler with API Gateway v1 and v2 events, including Bolt's lazy self-invocation."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from access.access_requests.models import AccessRequest
from access.grants.models import Grant
from access.migrate import upgrade
from access.settings import get_settings
from bot import lambda_handler
from tests.bot.harness import AUDIT, SIGNING_SECRET, World, bot_env


class _Invocations(ThreadingHTTPServer):
    """Stands in for the Lambda API: records each `Invoke` payload, answers 202."""

    daemon_threads = True

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.payloads.append(json.loads(self.rfile.read(length)))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@dataclass
class Context:
    function_name: str = "eice-slack"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:eice-slack"


@pytest.fixture
def lambda_env(
    sqlite_world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[_Invocations]:
    db_url = f"sqlite:///{tmp_path / 'lambda.sqlite'}"
    upgrade(db_url)
    assert sqlite_world.config_path is not None
    config = sqlite_world.config_path
    server = _Invocations()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = bot_env(sqlite_world.aws, sqlite_world.slack, db_url, config)
    env["AWS_ENDPOINT_URL_LAMBDA"] = f"http://127.0.0.1:{server.server_address[1]}"
    env["EICE_CHAIN_WITNESS_INTERVAL_S"] = "60"  # every one-minute tick is the witnessing one
    env["EICE_RECONCILER_INTERVAL_S"] = "60"  # ...and the reconciling one
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    lambda_handler.reset()
    yield server
    lam = lambda_handler._instance
    if lam is not None:
        with lam.rt.db.transaction() as s:
            live = [g.id for g in s.query(Grant).filter(Grant.status.in_(("active", "applying")))]
        from access import workflows
        from access.config.permissions import Actor

        for gid in live:
            workflows.revoke_now(lam.rt, gid, Actor("U0ADMIN"))
        lam.rt.db.dispose()
    lambda_handler.reset()
    get_settings.cache_clear()
    server.shutdown()
    server.server_close()


def _signed(world: World, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded", **world.driver.sign(body)}


def _command(world: World, user: str, text: str) -> bytes:
    return urlencode(
        {
            "command": "/eice",
            "text": text,
            "user_id": user,
            "user_name": user.lower(),
            "channel_id": "C0GENERAL",
            "team_id": "T0SANDBOX",
            "api_app_id": "A0EICE",
            "response_url": world.slack.response_url_for(user_id=user, channel_id="C0GENERAL"),
            "trigger_id": "1.2.abc",
        }
    ).encode()


def v1_event(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "resource": "/slack/events",
        "path": "/slack/events",
        "httpMethod": "POST",
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "requestContext": {"httpMethod": "POST", "path": "/prod/slack/events"},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def v2_event(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "POST /slack/events",
        "rawPath": "/slack/events",
        "rawQueryString": "",
        "cookies": [],
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": "POST", "path": "/slack/events"}},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def test_lambda_v1_request_then_v2_revoke(sqlite_world: World, lambda_env: _Invocations) -> None:
    w, ctx = sqlite_world, Context()
    dev = w.estate.instance("dev-box")

    body = _command(w, "U0CAROL", "request dev-box 10m from lambda")
    first = lambda_handler.handler(v1_event(body, _signed(w, body)), ctx)
    assert first["statusCode"] == 200 and "Checking" in first["body"]
    assert len(lambda_env.payloads) == 1  # the lazy listener went to Lambda, not a thread
    lazy = lambda_env.payloads[0]
    assert lazy["headers"]["x-slack-bolt-lazy-only"] == "1"

    second = lambda_handler.handler(lazy, ctx)
    assert second["statusCode"] == 200
    lam = lambda_handler._instance
    assert lam is not None
    with lam.rt.db.transaction() as s:
        request = s.query(AccessRequest).filter_by(requester_id="U0CAROL").one()
        grant = s.query(Grant).filter_by(request_id=request.id).one()
    assert request.instance_id == dev.instance_id and grant.status == "active"
    assert f"eice-grant-{grant.id}" in w.policies("carol")
    # the outbox was delivered inline after the lazy listener
    assert [m for m in w.slack.dms("U0CAROL") if grant.id in str(m.blocks)]

    body = _command(w, "U0CAROL", f"revoke {grant.id}")
    answer = lambda_handler.handler(v2_event(body, _signed(w, body)), ctx)
    assert answer["statusCode"] == 200
    lambda_handler.handler(lambda_env.payloads[-1], ctx)
    assert f"eice-grant-{grant.id}" not in w.policies("carol")

    tick = lambda_handler.tick_handler({}, ctx)
    assert {"reaper", "reconciler", "cloudtrail", "outbox_sent"} <= set(tick)
    # The chain head was queued and, in the same tick, posted to the audit channel.
    head = tick["chain_head"]["hash"]
    assert [m for m in w.slack.messages(AUDIT) if "Audit chain head" in m.text and head in m.text]


def test_lambda_rejects_a_bad_signature(sqlite_world: World, lambda_env: _Invocations) -> None:
    body = _command(sqlite_world, "U0CAROL", "list")
    headers = {**_signed(sqlite_world, body), "X-Slack-Signature": "v0=" + "1" * 64}
    answer = lambda_handler.handler(v1_event(body, headers), Context())
    assert answer["statusCode"] == 401
    assert lambda_env.payloads == []
    assert SIGNING_SECRET not in json.dumps(answer)


def test_migrate_handler(lambda_env: _Invocations) -> None:
    assert lambda_handler.migrate_handler({}, Context())["revision"]
