"""The AWS sandbox: moto's WSGI app behind our middleware, on a local threaded HTTP server.

The middleware is ``app.SandboxApp``; it hands IAM calls to ``iam_calls``, STS GetSessionToken
to ``session_token`` and ``/_sandbox/...`` to ``admin``.
"""

from __future__ import annotations

import threading

from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.aws import identity
from sandbox.aws.account import BOT_ACCESS_KEY_ID, BOT_SECRET_ACCESS_KEY, DEFAULT_ACCOUNT_ID
from sandbox.aws.app import SandboxApp
from sandbox.aws.cloudtrail import LookupEventsService
from sandbox.aws.endpoints import EndpointStore
from sandbox.aws.events import EventLog
from sandbox.aws.faults import FaultConfig
from sandbox.aws.request_info import JsonHandler


class _QuietRequestHandler(MotoRequestHandler):
    """moto's handler without a log line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class AwsSandbox:
    """A local AWS (IAM, STS, EC2, EC2 Instance Connect, CloudTrail) on 127.0.0.1.

    Args:
        host: address to listen on; keep it loopback.
        port: 0 picks a free port.
        region: the default region of `env()`.
        cloudtrail_delay_s: how long a CloudTrail record stays invisible to LookupEvents.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        cloudtrail_delay_s: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port
        self.region = region
        self.account_id = DEFAULT_ACCOUNT_ID
        self.events = EventLog(delay_s=cloudtrail_delay_s)
        self.endpoints = EndpointStore()
        self.faults = FaultConfig()
        self.targets: dict[tuple[str, int], tuple[str, int]] = {}
        self.url = ""
        self.app = SandboxApp(self)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> AwsSandbox:
        """Serve in a background thread; returns self."""
        self._server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=_QuietRequestHandler
        )
        self.port = self._server.socket.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # a quick stop() matters for tests
            name="aws-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> AwsSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all AWS state (moto's backends are process-wide) and our own."""
        moto_api_backend.reset()
        identity.forget_sessions()
        self.events.clear()
        self.endpoints.clear()
        self.faults.clear()
        self.faults.reset_counters()
        self.app.lookup = LookupEventsService(self.events, self.faults)

    def attach_tunnel_server(self, host: str, port: int, scheme: str) -> None:
        """Called by the OpenTunnel stand-in when it starts; from then on every endpoint's DnsName
        (and FipsDnsName) is f"{host}:{port}" (just host when port == 443)."""
        self.tunnel_scheme = scheme
        self.endpoints.tunnel_address = host if port == 443 else f"{host}:{port}"

    def register_json_target(self, target: str, handler: JsonHandler) -> None:
        """Route JSON-1.1 requests with X-Amz-Target == `target` to a handler.

        The handler is called as handler(request_info) -> (status, headers, body_bytes).

        Args:
            target: e.g. "AWSEC2InstanceConnectService.SendSSHPublicKey".
            handler: gets a RequestInfo; headers may be a dict or a list of pairs.
        """
        self.app.json_targets[target] = handler

    def env(self) -> dict[str, str]:
        """Environment that points boto3 at the sandbox (and gives the bot dummy keys)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": BOT_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": BOT_SECRET_ACCESS_KEY,
        }
