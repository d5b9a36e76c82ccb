"""A local stand-in for the Slack Web API: records every call, answers in Slack's shapes.

Point ``slack_sdk.WebClient(base_url=sandbox.url + "/api/")`` at it. Besides the Web API
methods the bot calls, it serves ``response_url`` endpoints (``/response/<id>``) with
Slack's limits, and can inject faults (429 with ``Retry-After``, error bodies, 5xx, hangs).
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DEFAULT_TOKEN = "xoxb-sandbox"
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL_S = 30 * 60

DEFAULT_USERS: list[dict[str, Any]] = [
    {"id": f"U0{name.upper()}", "name": name, "email": f"{name}@example.com"}
    for name in ("alice", "bob", "carol", "dave", "admin")
]
DEFAULT_USERGROUPS: dict[str, list[str]] = {"S0ONCALL": ["U0BOB", "U0CAROL"]}
CHANNEL_NAMES = {"C0GENERAL": "general", "C0APPROVALS": "eice-approvals"}


class SlackApiError(Exception):
    """A Web API method's ``{"ok": false, "error": ...}`` answer."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class Call:
    """One request the sandbox answered (``status`` 0: the connection was dropped)."""

    method: str
    params: dict[str, Any]
    at: float
    status: int
    response: Any


@dataclass
class Message:
    """A message the bot posted, in its current version; ``history`` holds earlier ones."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    user: str
    thread_ts: str | None = None
    attachments: list[Any] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False

    @property
    def edited(self) -> bool:
        return bool(self.history)

    def as_slack(self, bot_id: str = "B0EICEBOT") -> dict[str, Any]:
        """The message as Slack shows it in API answers and interaction payloads."""
        out: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "bot_id": bot_id,
            "ts": self.ts,
            "text": self.text,
            "blocks": copy.deepcopy(self.blocks),
        }
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.attachments:
            out["attachments"] = copy.deepcopy(self.attachments)
        if self.history:
            out["edited"] = {"user": self.user, "ts": self.history[-1]["edited_ts"]}
        return out


@dataclass
class _Fault:
    status: int
    retry_after: int
    remaining: int
    error: str | None
    timeout_s: float | None
    after_effect: bool

    def response(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.error is not None and self.status in (200, 429):
            return 200, {"ok": False, "error": self.error}, {}
        if self.status == 429:
            body = {"ok": False, "error": "ratelimited"}
            return 429, body, {"Retry-After": str(self.retry_after)}
        return self.status, {"ok": False, "error": self.error or "internal_error"}, {}


@dataclass
class _ResponseUrl:
    user_id: str
    channel_id: str
    message_ts: str | None
    is_ephemeral: bool
    created_at: float
    uses: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # bursts of a benchmark's commands must not be refused


class _Dropped(Exception):
    """The fault asked for a hang: answer nothing and close the connection."""


class SlackSandbox:
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
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._last_ts_us = 0
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # lifecycle

    def start(self) -> SlackSandbox:
        """Bind and serve in a background thread; ``url`` is set on return."""
        httpd = _Server((self.host, self.port), _handler_for(self))
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="slack-sandbox")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (hung fault responses are woken up)."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> SlackSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what tests and the driver read

    def user(self, user_id: str) -> dict[str, Any] | None:
        """The ``users.info`` user object, or None."""
        with self._lock:
            u = self.users.get(user_id)
            return copy.deepcopy(u) if u else None

    def dm_channel(self, user_id: str) -> str:
        """The DM channel id between the bot and a user (stable, like Slack's)."""
        return "D" + user_id[1:]

    def channel_name(self, channel_id: str) -> str:
        if channel_id.startswith("D"):
            return "directmessage"
        return CHANNEL_NAMES.get(channel_id, channel_id.lower())

    def messages(self, channel: str | None = None) -> list[Message]:
        """Snapshots of the live (not deleted) messages, oldest first."""
        with self._lock:
            return [
                copy.deepcopy(m)
                for m in self._messages
                if not m.deleted and (channel is None or m.channel == channel)
            ]

    def message(self, channel: str, ts: str) -> Message | None:
        """A snapshot of one message's current version, or None."""
        with self._lock:
            m = self._find(channel, ts)
            return copy.deepcopy(m) if m else None

    def thread(self, message: Message) -> list[Message]:
        """Replies in the thread under a message, oldest first."""
        return [m for m in self.messages(message.channel) if m.thread_ts == message.ts]

    def dms(self, user_id: str) -> list[Message]:
        return self.messages(self.dm_channel(user_id))

    def ephemerals(self, user_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._ephemerals if user_id in (None, e["user"])]

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            views = self._views.get(user_id)
            return copy.deepcopy(views[-1]) if views else None

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def response_url_for(
        self,
        *,
        user_id: str,
        channel_id: str,
        message_ts: str | None = None,
        is_ephemeral: bool = False,
    ) -> str:
        """A fresh response URL for a slash command (no ``message_ts``) or a click."""
        rid = secrets.token_hex(12)
        with self._lock:
            self._response_urls[rid] = _ResponseUrl(
                user_id, channel_id, message_ts, is_ephemeral, self.clock()
            )
        return f"{self.url}/response/{self.team_id}/{rid}"

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        error: str | None = None,
        timeout_s: float | None = None,
        after_effect: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        Args:
            method: a Web API method, or ``"response_url"`` for response URL posts.
            status: 429 (with ``Retry-After: retry_after``) or a 5xx.
            error: answer HTTP 200 ``{"ok": false, "error": error}`` (with status 429/200).
            timeout_s: hang this long, then close the connection without answering.
            after_effect: do what the call asks first, then fail (a lost response).
        """
        fault = _Fault(status, retry_after, times, error, timeout_s, after_effect)
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    # request handling (called from the HTTP handler threads)

    def handle_api(
        self, method: str, params: dict[str, Any], bearer: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        token = bearer or params.get("token")
        if not token:
            result: tuple[int, Any, dict[str, str]] = (200, _err("not_authed"), {})
        elif token != self.token:
            result = (200, _err("invalid_auth"), {})
        else:
            impl = _METHODS.get(method)
            if impl is None:
                result = (404, _err("unknown_method"), {})
            else:
                result = self._with_faults(method, lambda: _run(impl, self, params))
        return self._record(method, params, result)

    def handle_response_url(self, rid: str, params: dict[str, Any]) -> tuple[int, Any, dict]:
        result = self._with_faults("response_url", lambda: self._respond(rid, params))
        return self._record("response_url", {"response_url_id": rid, **params}, result)

    def _with_faults(
        self, method: str, effect: Callable[[], tuple[int, Any, dict[str, str]]]
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            faults = self._faults.get(method, [])
            fault = faults[0] if faults else None
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    faults.pop(0)
        if fault is None:
            return effect()
        if fault.after_effect:
            effect()
        if fault.timeout_s is not None:
            self._stopping.wait(fault.timeout_s)
            raise _Dropped
        return fault.response()

    def _record(self, method: str, params: dict[str, Any], result: tuple) -> tuple:
        with self._lock:
            self.calls.append(Call(method, params, self.clock(), result[0], result[1]))
        return result

    def _next_ts(self) -> str:
        with self._lock:
            self._last_ts_us = max(int(self.clock() * 1_000_000), self._last_ts_us + 1)
            return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _find(self, channel: str, ts: str) -> Message | None:
        for m in self._messages:
            if m.channel == channel and m.ts == ts and not m.deleted:
                return m
        return None

    def _resolve_channel(self, channel: str | None) -> str:
        """A postable channel id: C/G ids as given, D ids of known users, user ids to DMs."""
        if not channel:
            raise SlackApiError("channel_not_found")
        if channel[0] in "UW":
            if channel not in self.users:
                raise SlackApiError("channel_not_found")
            return self.dm_channel(channel)
        if channel[0] == "D" and ("U" + channel[1:]) not in self.users:
            raise SlackApiError("channel_not_found")
        if channel[0] not in "CGD":
            raise SlackApiError("channel_not_found")
        return channel

    def _post(self, channel: str, params: dict[str, Any]) -> Message:
        text, blocks = _content(params)
        thread_ts = params.get("thread_ts") or None
        with self._lock:
            if thread_ts and self._find(channel, thread_ts) is None:
                raise SlackApiError("thread_not_found")
            msg = Message(
                channel=channel,
                ts=self._next_ts(),
                text=text,
                blocks=blocks,
                user=self.bot_user_id,
                thread_ts=thread_ts,
                attachments=_json_field(params, "attachments", []),
                metadata=_json_field(params, "metadata", None),
            )
            self._messages.append(msg)
            return msg

    def _edit(self, msg: Message, params: dict[str, Any], *, partial: bool = False) -> None:
        """Replace a message's content; ``partial`` (chat.update) keeps fields not given."""
        text, blocks = _content(params, require=False)
        with self._lock:
            msg.history.append({"text": msg.text, "blocks": msg.blocks, "edited_ts": self._next_ts()})
            if "text" in params or not partial:
                msg.text = text
            if "blocks" in params or not partial:
                msg.blocks = blocks
            if "attachments" in params or not partial:
                msg.attachments = _json_field(params, "attachments", [])

    def _respond(self, rid: str, params: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            target = self._response_urls.get(rid)
            if target is None:
                return 404, "no_service", {}
            if self.clock() - target.created_at > RESPONSE_URL_TTL_S:
                return 404, "expired_url", {}
            if target.uses >= RESPONSE_URL_USES:
                return 404, "used_url", {}
            target.uses += 1
        try:
            self._apply_response(target, params)
        except SlackApiError as e:
            return 400, e.error, {}
        return 200, "ok", {}

    def _apply_response(self, target: _ResponseUrl, params: dict[str, Any]) -> None:
        replace = _flag(params.get("replace_original"))
        delete = _flag(params.get("delete_original"))
        if (replace or delete) and target.message_ts and not target.is_ephemeral:
            with self._lock:
                msg = self._find(target.channel_id, target.message_ts)
                if msg is None:
                    raise SlackApiError("message_not_found")
                if delete:
                    msg.deleted = True
                else:
                    self._edit(msg, params)
            return
        if params.get("response_type") == "in_channel" and not (replace or delete):
            self._post(target.channel_id, params)
            return
        if delete:
            return
        text, blocks = _content(params)
        with self._lock:
            self._ephemerals.append(
                {
                    "channel": target.channel_id,
                    "user": target.user_id,
                    "text": text,
                    "blocks": blocks,
                    "message_ts": self._next_ts(),
                    "thread_ts": params.get("thread_ts"),
                    "source": "response_url",
                    "replace_original": replace,
                }
            )


# Web API methods: each takes the sandbox and the merged params, returns the "ok" body.


def _auth_test(sb: SlackSandbox, p: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": "https://sandbox.slack.com/",
        "team": "Sandbox",
        "user": "eice",
        "team_id": sb.team_id,
        "user_id": sb.bot_user_id,
        "bot_id": sb.bot_id,
        "is_enterprise_install": False,
    }


def _chat_post_message(sb: SlackSandbox, p: dict[str, Any]) -> dict[str, Any]:
    msg = sb._post(sb._resolve_channel(p.get("channel")), p)
    return {"channel": msg.channel, "ts": msg.ts, "message": msg.as_slack(sb.bot_id)}


def _chat_update(sb: SlackSandbox, p: dict[str, Any]) -> dict[str, Any]:
    channel, ts = p.get("channel"), p.get("ts")
    if not channel or channel[0] not in "CGD":
        raise SlackApiError("channel_not_found")
    with sb._lock:
        msg = sb._find(channel, ts or "")
        if msg is None:
            raise SlackApiError("message_not_found")
        if msg.user != sb.bot_user_id:
            raise SlackApiError("cant_update_message")
        sb._edit(msg, p, partial=True)
        return {
            "channel": channel,
            "ts": msg.ts,
            "text": msg.text,
            "message": msg.as_slack(sb.bot_id),
        }


def _chat_post_ephemeral(sb: SlackSandbox, p: dict[str, Any]) -> dict[str, Any]:
    channel = sb._resolve_channel(p.get("channel"))
    user = p.get("user")
    if user not in sb.users:
        raise SlackApiError("user_not_found")
    text, blocks = _content(p)
    ts = sb._next_ts()
    with sb._lock:
        sb._ephemerals.append(
            {
                "channel": channel,
                "user": user,
                "text": text,
                "blocks": blocks,
                "message_ts": ts,
                "thread_ts": p.get("thread_ts"),
                "source": "chat.postEphemeral",
                "replace_original": False,
            }
        )
    return {"message_ts": ts}


def _conversations_open(sb: SlackSandbox, p: dict[str, Any]) -> dict[str, Any]:
    raw = p.get("users") or ""
    users = raw if isinstance(raw, list) else [u for u in str(raw).split(",") if u]
    if not users:
        raise SlackApiError("users_list_not_supplied")
    if any(u not in sb.users for u in users):
        raise SlackApiError("user_not_found")
    if len(users) == 1:
        return {"channel": {"id": sb.dm_channel(users[0]), "is_im": True, "user": users[0]}}
    gid = "G" + "".join(sorted(u[2:5] for u in users)).upper()
    return {"channel": {"id": gid, "is_mpim": True}}


def _views_publish(sb: SlackSandbox, p: dict[str, Any]) -> dict[str, Any]:
    user_id = str(p.get("user_id") or "")
    if user_id not in sb.users:
        raise SlackApiError("user_not_found")
    view = _json_field(p, "view", None)
    if not isinstance(view, dict) or view.get("type") != "home":
        raise SlackApiError("invalid_arguments")
    blocks = view.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 100:
        raise SlackApiError("invalid_blocks")
    with sb._lock:
        history = sb._views.setdefault(user_id, [])
        published = {
            "id": f"V0{user_id[1:]}",
            "team_id": sb.team_id,
            "type": "home",
            "blocks": blocks,
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{len(history) + 1}.{secrets.token_hex(4)}",
            "app_id": "A0EICE",
            "bot_id": sb.bot_id,
        }
        history.append(published)
    return {"view": copy.deepcopy(published)}


def _users_info(sb: SlackSandbox, p: dict[str, Any]) -> dict[str, Any]:
    user = sb.user(p.get("user") or "")
    if user is None:
        raise SlackApiError("user_not_found")
    return {"user": user}


def _users_lookup_by_email(sb: SlackSandbox, p: dict[str, Any]) -> dict[str, Any]:
    email = (p.get("email") or "").lower()
    for user in sb.users.values():
        if user["profile"]["email"].lower() == email:
            return {"user": copy.deepcopy(user)}
    raise SlackApiError("users_not_found")


def _usergroups_users_list(sb: SlackSandbox, p: dict[str, Any]) -> dict[str, Any]:
    group = sb.usergroups.get(p.get("usergroup") or "")
    if group is None:
        raise SlackApiError("no_such_subteam")
    return {"users": list(group)}


def _conversations_history(sb: SlackSandbox, p: dict[str, Any]) -> dict[str, Any]:
    """Top-level messages of a channel, newest first (no paging: ``has_more`` is always false)."""
    channel = sb._resolve_channel(p.get("channel"))
    limit = max(1, min(1000, int(p.get("limit") or 100)))
    top = [m for m in reversed(sb.messages(channel)) if m.thread_ts is None][:limit]
    return {"ok": True, "messages": [m.as_slack(sb.bot_id) for m in top], "has_more": False}


_METHODS: dict[str, Callable[[SlackSandbox, dict[str, Any]], dict[str, Any]]] = {
    "conversations.history": _conversations_history,
    "auth.test": _auth_test,
    "chat.postMessage": _chat_post_message,
    "chat.update": _chat_update,
    "chat.postEphemeral": _chat_post_ephemeral,
    "conversations.open": _conversations_open,
    "views.publish": _views_publish,
    "users.info": _users_info,
    "users.lookupByEmail": _users_lookup_by_email,
    "usergroups.users.list": _usergroups_users_list,
}


def _run(impl: Callable, sb: SlackSandbox, params: dict[str, Any]) -> tuple[int, Any, dict]:
    try:
        return 200, {"ok": True, **impl(sb, params)}, {}
    except SlackApiError as e:
        return 200, _err(e.error), {}


def _err(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _json_field(params: dict[str, Any], name: str, default: Any) -> Any:
    """A structured param: a JSON string in form bodies, already decoded in JSON bodies."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as e:
            raise SlackApiError(f"invalid_{name}") from e
    return value


def _content(params: dict[str, Any], *, require: bool = True) -> tuple[str, list[dict]]:
    text = params.get("text") or ""
    blocks = _json_field(params, "blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        raise SlackApiError("invalid_blocks")
    if any(not isinstance(b, dict) or "type" not in b for b in blocks):
        raise SlackApiError("invalid_blocks")
    if len(text) > 40_000:
        raise SlackApiError("msg_too_long")
    if require and not text and not blocks and not params.get("attachments"):
        raise SlackApiError("no_text")
    for block in blocks:
        block.setdefault("block_id", secrets.token_urlsafe(3))  # as Slack fills them in
    return str(text), blocks


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


def _parse_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if not body:
        return params
    if "json" in content_type:
        decoded = json.loads(body)
        if isinstance(decoded, dict):
            params.update(decoded)
    else:
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
    return params


def _handler_for(sandbox: SlackSandbox) -> type[BaseHTTPRequestHandler]:
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
                params = _parse_params(split.query, body, self.headers.get("Content-Type") or "")
            except ValueError:
                self._send(400, _err("invalid_json"), {})
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
            except _Dropped:
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
