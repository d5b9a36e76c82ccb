"""The Slack stand-in's conversations: posted messages with their edits, ephemerals and Home views."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.slack.params import SlackApiError, content, json_field

CHANNEL_NAMES = {"C0GENERAL": "general", "C0APPROVALS": "eice-approvals"}


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


class Conversations:
    """Mixin of ``SlackSandbox``: what was posted where, read by tests and the driver."""

    users: dict[str, dict[str, Any]]
    bot_user_id: str
    clock: Callable[[], float]
    _messages: list[Message]
    _ephemerals: list[dict[str, Any]]
    _views: dict[str, list[dict[str, Any]]]
    _last_ts_us: int
    _lock: threading.RLock

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
        text, blocks = content(params)
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
                attachments=json_field(params, "attachments", []),
                metadata=json_field(params, "metadata", None),
            )
            self._messages.append(msg)
            return msg

    def _edit(self, msg: Message, params: dict[str, Any], *, partial: bool = False) -> None:
        """Replace a message's content; ``partial`` (chat.update) keeps fields not given."""
        text, blocks = content(params, require=False)
        with self._lock:
            msg.history.append({"text": msg.text, "blocks": msg.blocks, "edited_ts": self._next_ts()})
            if "text" in params or not partial:
                msg.text = text
            if "blocks" in params or not partial:
                msg.blocks = blocks
            if "attachments" in params or not partial:
                msg.attachments = json_field(params, "attachments", [])
