"""The Slack stand-in's ``response_url`` endpoints, with Slack's limits (5 uses within 30 minutes)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sandbox.slack.calls import Result
from sandbox.slack.conversations import Conversations
from sandbox.slack.params import SlackApiError, content, flag

RESPONSE_URL_USES = 5
RESPONSE_URL_TTL_S = 30 * 60


@dataclass
class ResponseUrl:
    """Where a response URL answers to: a slash command's channel or a clicked message."""

    user_id: str
    channel_id: str
    message_ts: str | None
    is_ephemeral: bool
    created_at: float
    uses: int = 0


class ResponseUrls(Conversations):
    """Mixin of ``SlackSandbox``: hands out response URLs and applies what is posted to them."""

    url: str
    team_id: str
    _response_urls: dict[str, ResponseUrl]

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
            self._response_urls[rid] = ResponseUrl(
                user_id, channel_id, message_ts, is_ephemeral, self.clock()
            )
        return f"{self.url}/response/{self.team_id}/{rid}"

    def _respond(self, rid: str, params: dict[str, Any]) -> Result:
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

    def _apply_response(self, target: ResponseUrl, params: dict[str, Any]) -> None:
        replace = flag(params.get("replace_original"))
        delete = flag(params.get("delete_original"))
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
        text, blocks = content(params)
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
