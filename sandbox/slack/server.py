"""A local stand-in for the Slack Web API: records every call, answers in Slack's shapes.

Point ``slack_sdk.WebClient(base_url=sandbox.url + "/api/")`` at it. Besides the Web API
methods the bot calls, it serves ``response_url`` endpoints (``/response/<id>``) with
Slack's limits, and can inject faults (429 with ``Retry-After``, error bodies, 5xx, hangs).

The pieces live beside this module: ``calls`` (call log, faults), ``conversations``
(messages, ephemerals, Home views), ``response_urls``, ``methods`` (the Web API methods),
``params`` (reading a call's params) and ``http_handler`` (routing).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from sandbox.slack.calls import Call, CallRecorder, Fault
from sandbox.slack.conversations import Message
from sandbox.slack.http_handler import SlackHTTPServer, handler_for
from sandbox.slack.methods import METHODS, run_method
from sandbox.slack.params import error_body
from sandbox.slack.response_urls import ResponseUrl, ResponseUrls
from sandbox.slack.socket_mode import SocketModeServer

DEFAULT_TOKEN = "xoxb-sandbox"
DEFAULT_APP_TOKEN = "xapp-1-sandbox"  # the app-level token Socket Mode connects with

DEFAULT_USERS: list[dict[str, Any]] = [
    {"id": f"U0{name.upper()}", "name": name, "email": f"{name}@example.com"}
    for name in ("alice", "bob", "carol", "dave", "admin")
]
DEFAULT_USERGROUPS: dict[str, list[str]] = {"S0ONCALL": ["U0BOB", "U0CAROL"]}


class SlackSandbox(ResponseUrls, CallRecorder):
    """The Slack Web API on 127.0.0.1, with users, usergroups, channels and DMs in memory.

    Args:
        host: interface to listen on; keep it on loopback.
        port: 0 picks a free port.
        users: dicts with ``id``, ``name``, ``email`` and optionally ``real_name``, ``tz``.
        usergroups: usergroup id to member user ids.
        team_id: the workspace id in answers.
        bot_user_id: the bot's user id (``auth.test``, author of posted messages).
        token: the only bot token accepted.
        clock: seconds since the epoch; injectable so tests can expire response URLs.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: list[dict[str, Any]] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        team_id: str = "T0SANDBOX",
        bot_user_id: str = "U0EICEBOT",
        token: str = DEFAULT_TOKEN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host, self.port = host, port
        self.team_id, self.bot_user_id, self.bot_id = team_id, bot_user_id, "B0EICEBOT"
        self.token = token
        self.clock = clock
        self.users = {u["id"]: _full_user(u, team_id) for u in (users or DEFAULT_USERS)}
        groups = DEFAULT_USERGROUPS if usergroups is None else usergroups
        self.usergroups = {k: list(v) for k, v in groups.items()}
        self.calls: list[Call] = []
        self._messages: list[Message] = []
        self._ephemerals: list[dict[str, Any]] = []
        self._views: dict[str, list[dict[str, Any]]] = {}
        self._response_urls: dict[str, ResponseUrl] = {}
        self._faults: dict[str, list[Fault]] = {}
        self._last_ts_us = 0
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: SlackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.app_token = DEFAULT_APP_TOKEN
        self.socket = SocketModeServer(host)

    # lifecycle

    def start(self) -> SlackSandbox:
        """Bind and serve in a background thread; ``url`` is set on return."""
        httpd = SlackHTTPServer((self.host, self.port), handler_for(self))
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="slack-sandbox")
        self._thread.daemon = True
        self._thread.start()
        self.socket.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (hung fault responses are woken up)."""
        self._stopping.set()
        self.socket.stop()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> SlackSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def user(self, user_id: str) -> dict[str, Any] | None:
        """The ``users.info`` user object, or None."""
        with self._lock:
            u = self.users.get(user_id)
            return copy.deepcopy(u) if u else None

    # request handling (called from the HTTP handler threads)

    def handle_api(
        self, method: str, params: dict[str, Any], bearer: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        token = bearer or params.get("token")
        if not token:
            result: tuple[int, Any, dict[str, str]] = (200, error_body("not_authed"), {})
        elif method == "apps.connections.open":  # the one method that takes the app-level token
            if token == self.app_token:
                result = (200, {"ok": True, "url": self.socket.url}, {})
            else:
                error = "not_allowed_token_type" if token.startswith("xoxb-") else "invalid_auth"
                result = (200, error_body(error), {})
        elif token != self.token:
            result = (200, error_body("invalid_auth"), {})
        else:
            impl = METHODS.get(method)
            if impl is None:
                result = (404, error_body("unknown_method"), {})
            else:
                result = self._with_faults(method, lambda: run_method(impl, self, params))
        return self._record(method, params, result)

    def handle_response_url(self, rid: str, params: dict[str, Any]) -> tuple[int, Any, dict]:
        result = self._with_faults("response_url", lambda: self._respond(rid, params))
        return self._record("response_url", {"response_url_id": rid, **params}, result)


def _full_user(u: dict[str, Any], team_id: str) -> dict[str, Any]:
    name = u.get("name") or u["id"].lower()
    real_name = u.get("real_name") or name.capitalize()
    tz = u.get("tz", "Europe/London")
    return {
        "id": u["id"],
        "team_id": team_id,
        "name": name,
        "real_name": real_name,
        "deleted": bool(u.get("deleted", False)),
        "is_bot": bool(u.get("is_bot", False)),
        "tz": tz,
        "tz_label": tz,
        "tz_offset": int(u.get("tz_offset", 0)),
        "profile": {
            "email": u.get("email", f"{name}@example.com"),
            "real_name": real_name,
            "display_name": name,
        },
    }
