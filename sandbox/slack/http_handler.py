"""The Slack stand-in's HTTP side: routes ``/api/<method>``, ``/response/...`` and the pages to it."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sandbox.slack.calls import Dropped
from sandbox.slack.params import error_body, parse_params

if TYPE_CHECKING:
    from sandbox.slack.server import SlackSandbox


class SlackHTTPServer(ThreadingHTTPServer):
    """A threaded server that neither waits for its handlers nor refuses bursts."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # bursts of a benchmark's commands must not be refused


def handler_for(sandbox: SlackSandbox) -> type[BaseHTTPRequestHandler]:
    """A request handler class that answers from ``sandbox``.

    Args:
        sandbox: the stand-in whose ``handle_api`` and ``handle_response_url`` answer requests.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # one write per response and no Nagle: otherwise delayed ACKs cap keep-alive clients
        wbufsize = 64 * 1024
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._dispatch()

        def do_POST(self) -> None:
            self._dispatch()

        def _dispatch(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                params = parse_params(split.query, body, self.headers.get("Content-Type") or "")
            except ValueError:
                self._send(400, error_body("invalid_json"), {})
                return
            parts = split.path.strip("/").split("/")
            if self.command == "GET" and parts[0] in ("", "transcript.txt"):
                from sandbox.slack import render  # only this page needs it

                page = render.html(sandbox) if parts[0] == "" else render.transcript(sandbox)
                self._send(200, page, {})
                return
            try:
                if len(parts) == 2 and parts[0] == "api":
                    auth = self.headers.get("Authorization") or ""
                    bearer = auth[7:].strip() if auth.startswith("Bearer ") else None
                    result = sandbox.handle_api(parts[1], params, bearer)
                elif len(parts) == 3 and parts[0] == "response":
                    result = sandbox.handle_response_url(parts[2], params)
                else:
                    result = (404, "not_found", {})
            except Dropped:
                method = parts[1] if parts[0] == "api" else "response_url"
                sandbox._record(method, params, (0, None, {}))
                self.close_connection = True
                return
            self._send(*result)

        def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
            if isinstance(payload, str):
                data, ctype = payload.encode(), "text/html; charset=utf-8"
            else:
                data, ctype = json.dumps(payload).encode(), "application/json; charset=utf-8"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
