"""Plays the Slack users: sends the bot signed slash commands, clicks and App Home events."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from sandbox.slack.conversations import Message
from sandbox.slack.server import SlackSandbox

API_APP_ID = "A0EICE"
VERIFICATION_TOKEN = "sandbox-verification-token"  # deprecated by Slack, still sent


@dataclass
class DriverResponse:
    """What the bot answered to one request."""

    status: int
    body: str
    json: dict[str, Any] | None
    elapsed_ms: float
    headers: dict[str, str]


class ButtonNotFound(LookupError):
    """The message or view has no button with that action_id (and value)."""


class SlackDriver:
    """Sends the bot what Slack would, signed with the app's signing secret.

    Args:
        bot_url: the bot's ``POST /slack/events`` URL.
        signing_secret: the app's signing secret.
        slack: the sandbox the bot talks to (response URLs, messages and users come from it).
        team_id: the workspace id sent in payloads.
        timeout_s: per-request timeout.
    """

    def __init__(
        self,
        *,
        bot_url: str,
        signing_secret: str,
        slack: SlackSandbox,
        team_id: str = "T0SANDBOX",
        timeout_s: float = 10.0,
    ) -> None:
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.slack = slack
        self.team_id = team_id
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Slack's v0 request signature headers for a body."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        base = b"v0:" + ts.encode() + b":" + body
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}

    def send_raw(self, body: bytes, headers: dict[str, str]) -> DriverResponse:
        """POST a body with exactly these headers (for tests that tamper after signing)."""
        started = time.perf_counter()
        r = self.session.post(self.bot_url, data=body, headers=headers, timeout=self.timeout_s)
        elapsed_ms = (time.perf_counter() - started) * 1000
        try:
            parsed = r.json() if r.content else None
        except ValueError:
            parsed = None
        return DriverResponse(
            status=r.status_code,
            body=r.text,
            json=parsed if isinstance(parsed, dict) else None,
            elapsed_ms=elapsed_ms,
            headers=dict(r.headers),
        )

    def command(
        self, user_id: str, text: str, *, command: str = "/eice", channel_id: str = "C0GENERAL"
    ) -> DriverResponse:
        """Type a slash command in a channel (delivered over HTTP, signed)."""
        form = self.command_payload(user_id, text, command=command, channel_id=channel_id)
        return self._post_form(urlencode(form).encode())

    def command_over_socket(
        self, user_id: str, text: str, *, command: str = "/eice", channel_id: str = "C0GENERAL"
    ) -> dict[str, Any]:
        """Type a slash command, delivered to a bot in Socket Mode; returns its ack envelope."""
        payload = self.command_payload(user_id, text, command=command, channel_id=channel_id)
        return self.slack.socket.send("slash_commands", payload)

    def command_payload(
        self, user_id: str, text: str, *, command: str = "/eice", channel_id: str = "C0GENERAL"
    ) -> dict[str, str]:
        """The fields Slack sends for a slash command (a form over HTTP, JSON over a socket)."""
        return {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "team_domain": "sandbox",
            "channel_id": channel_id,
            "channel_name": self.slack.channel_name(channel_id),
            "user_id": user_id,
            "user_name": self._user_name(user_id),
            "command": command,
            "text": text,
            "api_app_id": API_APP_ID,
            "is_enterprise_install": "false",
            "response_url": self.slack.response_url_for(user_id=user_id, channel_id=channel_id),
            "trigger_id": _trigger_id(),
        }

    def click(
        self,
        user_id: str,
        message: Message | dict[str, Any],
        action_id: str,
        *,
        value: str | None = None,
    ) -> DriverResponse:
        """Click a button in a message (a ``Message``, or an ephemeral dict from the sandbox).

        The button is looked up in the message's current blocks; ``value`` picks one of
        several buttons sharing an ``action_id``.
        """
        if isinstance(message, Message):
            current = self.slack.message(message.channel, message.ts)
            if current is None:
                raise ButtonNotFound(f"message {message.channel}/{message.ts} no longer exists")
            channel, ts, blocks, ephemeral = current.channel, current.ts, current.blocks, False
        else:
            channel, ts = message["channel"], message["message_ts"]
            blocks, ephemeral, current = message["blocks"], True, None
        block_id, button = _find_button(blocks, action_id, value)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": API_APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            },
            "trigger_id": _trigger_id(),
            "team": {"id": self.team_id, "domain": "sandbox"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": self.slack.channel_name(channel)},
            "state": {"values": {}},
            "response_url": self.slack.response_url_for(
                user_id=user_id, channel_id=channel, message_ts=ts, is_ephemeral=ephemeral
            ),
            "actions": [_action(block_id, button)],
        }
        if current is not None:
            payload["message"] = current.as_slack(self.slack.bot_id)
        return self._post_payload(payload)

    def click_home(self, user_id: str, action_id: str, value: str) -> DriverResponse:
        """Click a button in the App Home view last published for the user."""
        view = self.slack.home_view(user_id)
        if view is None:
            raise ButtonNotFound(f"no App Home view published for {user_id}")
        block_id, button = _find_button(view.get("blocks", []), action_id, value)
        payload = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": API_APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {"type": "view", "view_id": view["id"]},
            "trigger_id": _trigger_id(),
            "team": {"id": self.team_id, "domain": "sandbox"},
            "enterprise": None,
            "is_enterprise_install": False,
            "view": view,
            "actions": [_action(block_id, button)],
        }
        return self._post_payload(payload)

    def open_home(self, user_id: str) -> DriverResponse:
        """The user opens the app's Home tab (an ``app_home_opened`` event)."""
        now = time.time()
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": self.slack.dm_channel(user_id),
            "tab": "home",
            "event_ts": f"{now:.6f}",
        }
        view = self.slack.home_view(user_id)
        if view is not None:
            event["view"] = view
        envelope = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "api_app_id": API_APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(now),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.slack.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        body = json.dumps(envelope).encode()
        headers = {"Content-Type": "application/json", **self.sign(body)}
        return self.send_raw(body, headers)

    def _post_payload(self, payload: dict[str, Any]) -> DriverResponse:
        return self._post_form(urlencode({"payload": json.dumps(payload)}).encode())

    def _post_form(self, body: bytes) -> DriverResponse:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **self.sign(body)}
        return self.send_raw(body, headers)

    def _user_name(self, user_id: str) -> str:
        user = self.slack.user(user_id)
        return user["name"] if user else user_id.lower()

    def _user(self, user_id: str) -> dict[str, str]:
        name = self._user_name(user_id)
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}


def _trigger_id() -> str:
    return f"{secrets.randbelow(10**13)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def _buttons(blocks: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for block in blocks:
        block_id = block.get("block_id") or ""
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("type") == "button":
                yield block_id, element


def _find_button(
    blocks: list[dict[str, Any]], action_id: str, value: str | None
) -> tuple[str, dict[str, Any]]:
    candidates = [(b, e) for b, e in _buttons(blocks) if e.get("action_id") == action_id]
    for block_id, button in candidates:
        if value is None or button.get("value") == value:
            return block_id, button
    seen = [(e.get("action_id"), e.get("value")) for _, e in _buttons(blocks)]
    wanted = action_id if value is None else f"{action_id} with value {value!r}"
    raise ButtonNotFound(f"no button {wanted}; buttons present (action_id, value): {seen}")


def _action(block_id: str, button: dict[str, Any]) -> dict[str, Any]:
    action: dict[str, Any] = {
        "action_id": button["action_id"],
        "block_id": block_id or secrets.token_hex(3),
        "text": button.get("text", {"type": "plain_text", "text": ""}),
        "type": "button",
        "action_ts": f"{time.time():.6f}",
    }
    if "value" in button:
        action["value"] = button["value"]
    if "style" in button:
        action["style"] = button["style"]
    return action
