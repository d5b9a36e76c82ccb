"""The AWS sandbox: moto's WSGI app behind our middleware, on a local threaded HTTP server."""

from __future__ import annotations

import io
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from moto.iam.models import iam_backends
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.aws import identity
from sandbox.aws.cloudtrail import LOOKUP_EVENTS_TARGET, LookupEventsService
from sandbox.aws.endpoints import ENDPOINT_ACTIONS, EndpointStore, handle_endpoint_action
from sandbox.aws.events import EventLog, cloudtrail_record
from sandbox.aws.faults import REFUSAL_STATUS, FaultConfig

DEFAULT_ACCOUNT_ID = "123456789012"
BOT_ACCESS_KEY_ID = "AKIAEICEBOTSANDBOX01"
BOT_SECRET_ACCESS_KEY = "sandbox-bot-secret-not-a-real-key"
POLICY_ACTIONS = {
    "PutRolePolicy": "RoleName",
    "DeleteRolePolicy": "RoleName",
    "PutUserPolicy": "UserName",
    "DeleteUserPolicy": "UserName",
}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_REQUEST_ID = re.compile(rb"<RequestId>([^<]+)</RequestId>")
_ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_ERROR_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")

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


def _scope(environ: dict) -> tuple[str | None, str | None, str | None]:
    """(access key id, region, service) from a SigV4 Authorization header."""
    found = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    return (found.group(1), found.group(2), found.group(3)) if found else (None, None, None)


def _headers(environ: dict) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").title(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").title()] = environ[key]
    return headers


def _iam_error(code: str, message: str, status: int) -> tuple[int, Headers, bytes]:
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error>'
        f"<Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    return status, [("Content-Type", "text/xml")], body


def _cloudtrail_error_code(code: str) -> str:
    # CloudTrail shows IAM's modelled errors with the exception suffix.
    if code in {"NoSuchEntity", "MalformedPolicyDocument", "LimitExceeded", "UnmodifiableEntity"}:
        return code + "Exception"
    return code


class SandboxApp:
    """WSGI middleware: our AWS additions first, moto for everything else."""

    def __init__(self, sandbox: AwsSandbox) -> None:
        self.sandbox = sandbox
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.json_targets: dict[str, JsonHandler] = {}
        self.lookup = LookupEventsService(sandbox.events, sandbox.faults)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = self._read_body(environ)
        status, headers, payload = self._dispatch(environ, body)
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [payload]

    @staticmethod
    def _read_body(environ: dict) -> bytes:
        length = environ.get("CONTENT_LENGTH")
        stream = environ["wsgi.input"]
        if length:
            body = stream.read(int(length))
        elif environ.get("wsgi.input_terminated"):
            body = stream.read()
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return bytes(body)

    def _dispatch(self, environ: dict, body: bytes) -> tuple[int, Headers, bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_sandbox/"):
            return self._admin(environ.get("REQUEST_METHOD", "GET"), path, body)
        key, region, service = _scope(environ)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        handler = self.json_targets.get(target)
        if handler is not None:
            return self._json_target(handler, environ, body, key, region)
        if target == LOOKUP_EVENTS_TARGET:
            status, answer = self.lookup.handle(body, region or self.sandbox.region)
            return (
                status,
                [("Content-Type", "application/x-amz-json-1.1")],
                json.dumps(answer).encode(),
            )
        params = parse_qs(environ.get("QUERY_STRING", ""))
        if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            params.update(parse_qs(body.decode(), keep_blank_values=True))
        action = (params.get("Action") or [target.rsplit(".", 1)[-1]])[0]
        self.sandbox.faults.count(f"{service}:{action}")
        if service == "ec2" and action in ENDPOINT_ACTIONS:
            status, xml = handle_endpoint_action(
                self.sandbox.endpoints,
                action,
                params,
                region or self.sandbox.region,
                self.sandbox.account_id,
            )
            return status, [("Content-Type", "text/xml")], xml
        if service == "iam":
            return self._iam(environ, action, params, key)
        if service == "sts" and action == "GetSessionToken" and key:
            issued = self._get_session_token(key, params)
            if issued is not None:
                return issued
        return self._moto(environ)

    def _moto(self, environ: dict) -> tuple[int, Headers, bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: Headers, exc_info: Any = None) -> None:
            captured["status"], captured["headers"] = int(status.split()[0]), headers

        chunks = self.moto(environ, capture)
        try:
            payload = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        return captured["status"], headers, payload

    def _json_target(
        self, handler: JsonHandler, environ: dict, body: bytes, key: str | None, region: str | None
    ) -> tuple[int, Headers, bytes]:
        info = RequestInfo(
            method=environ.get("REQUEST_METHOD", "POST"),
            path=environ.get("PATH_INFO", "/"),
            query_string=environ.get("QUERY_STRING", ""),
            headers=_headers(environ),
            body=body,
            client_ip=environ.get("REMOTE_ADDR", "127.0.0.1"),
            client_port=int(environ.get("REMOTE_PORT") or 0),
            access_key_id=key,
            region=region,
        )
        status, headers, payload = handler(info)
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        return status, [(str(k), str(v)) for k, v in pairs], payload

    def _iam(
        self, environ: dict, action: str, params: dict[str, list[str]], key: str | None
    ) -> tuple[int, Headers, bytes]:
        faults = self.sandbox.faults
        if faults.iam_latency_s > 0:
            threading.Event().wait(faults.iam_latency_s)
        fault = faults.iam_fault()
        if fault == "Throttling":
            return _iam_error("Throttling", "Rate exceeded", 400)
        if fault == "ServiceFailure":
            return _iam_error("ServiceFailure", "Service failure (sandbox fault injection)", 500)
        name_param = POLICY_ACTIONS.get(action)
        name = params[name_param][0] if name_param and params.get(name_param) else None
        refusal = faults.refusal_for(name)
        if refusal:
            message = (
                f"Cannot perform the operation on the protected role '{name}'"
                if refusal == "UnmodifiableEntity"
                else f"User is not authorized to perform: iam:{action} on resource: {name}"
            )
            answer = _iam_error(refusal, message, REFUSAL_STATUS[refusal])
        else:
            answer = self._moto(environ)
        if name_param:
            self._record_policy_call(environ, action, params, key, answer)
        return answer

    def _record_policy_call(
        self,
        environ: dict,
        action: str,
        params: dict[str, list[str]],
        key: str | None,
        answer: tuple[int, Headers, bytes],
    ) -> None:
        status, _, payload = answer
        principal = identity.principal_for_key(key or BOT_ACCESS_KEY_ID, self.sandbox.account_id)
        name_key = "roleName" if "Role" in action else "userName"
        request_parameters = {
            name_key: params[POLICY_ACTIONS[action]][0],
            "policyName": (params.get("PolicyName") or [""])[0],
        }
        if "PolicyDocument" in params:
            request_parameters["policyDocument"] = params["PolicyDocument"][0]
        request_id = _REQUEST_ID.search(payload)
        code = _ERROR_CODE.search(payload) if status >= 400 else None
        message = _ERROR_MESSAGE.search(payload) if status >= 400 else None
        record = cloudtrail_record(
            event_source="iam.amazonaws.com",
            event_name=action,
            region="us-east-1",
            identity=identity.cloudtrail_user_identity(principal),
            source_ip=environ.get("REMOTE_ADDR", "127.0.0.1"),
            user_agent=environ.get("HTTP_USER_AGENT", ""),
            request_parameters=request_parameters,
            response_elements=None,
            error_code=_cloudtrail_error_code(code.group(1).decode()) if code else None,
            error_message=message.group(1).decode() if message else None,
            request_id=request_id.group(1).decode() if request_id else None,
            account_id=self.sandbox.account_id,
        )
        self.sandbox.events.record(record)

    def _get_session_token(self, key: str, params: dict[str, list[str]]) -> tuple[int, Headers, bytes] | None:
        found = identity.lookup_access_key(key)
        if found is None or found[0].kind != "IAMUser":
            return None
        principal = found[0]
        temp = iam_backends[principal.account_id]["aws"].create_temp_access_key()
        token = secrets.token_urlsafe(96)
        identity.issue_session_token(principal, temp.access_key_id, temp.secret_access_key, token)
        duration = int((params.get("DurationSeconds") or ["43200"])[0])
        expiration = (datetime.now(UTC) + timedelta(seconds=duration)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = (
            '<GetSessionTokenResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<GetSessionTokenResult><Credentials>"
            f"<SessionToken>{token}</SessionToken>"
            f"<SecretAccessKey>{temp.secret_access_key}</SecretAccessKey>"
            f"<Expiration>{expiration}</Expiration>"
            f"<AccessKeyId>{temp.access_key_id}</AccessKeyId>"
            "</Credentials></GetSessionTokenResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</GetSessionTokenResponse>"
        ).encode()
        return 200, [("Content-Type", "text/xml")], body

    def _admin(self, method: str, path: str, body: bytes) -> tuple[int, Headers, bytes]:
        sandbox = self.sandbox
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
