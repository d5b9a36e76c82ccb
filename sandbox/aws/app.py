"""The AWS sandbox's WSGI app: our AWS additions first, moto for everything else."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from sandbox.aws.admin import handle_admin
from sandbox.aws.cloudtrail import LOOKUP_EVENTS_TARGET, LookupEventsService
from sandbox.aws.endpoints import ENDPOINT_ACTIONS, handle_endpoint_action
from sandbox.aws.iam_calls import handle_iam
from sandbox.aws.request_info import Headers, JsonHandler, RequestInfo, credential_scope, request_headers
from sandbox.aws.session_token import get_session_token

if TYPE_CHECKING:
    from sandbox.aws.server import AwsSandbox


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
            return handle_admin(self.sandbox, environ.get("REQUEST_METHOD", "GET"), path, body)
        key, region, service = credential_scope(environ)
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
            return handle_iam(self.sandbox, environ, action, params, key, self._moto)
        if service == "sts" and action == "GetSessionToken" and key:
            issued = get_session_token(key, params)
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
            headers=request_headers(environ),
            body=body,
            client_ip=environ.get("REMOTE_ADDR", "127.0.0.1"),
            client_port=int(environ.get("REMOTE_PORT") or 0),
            access_key_id=key,
            region=region,
        )
        status, headers, payload = handler(info)
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        return status, [(str(k), str(v)) for k, v in pairs], payload
