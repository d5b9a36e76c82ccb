"""Reading a Web API call's params as Slack does: form or JSON bodies, structured fields, content."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qsl


class SlackApiError(Exception):
    """A Web API method's ``{"ok": false, "error": ...}`` answer."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def error_body(error: str) -> dict[str, Any]:
    """The body of a failed Web API call."""
    return {"ok": False, "error": error}


def flag(value: Any) -> bool:
    """A boolean param, sent as ``true`` or ``1`` in form bodies."""
    return value is True or str(value).lower() in ("true", "1")


def json_field(params: dict[str, Any], name: str, default: Any) -> Any:
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


def content(params: dict[str, Any], *, require: bool = True) -> tuple[str, list[dict]]:
    """A message's text and blocks, checked against Slack's limits (``block_id`` filled in)."""
    text = params.get("text") or ""
    blocks = json_field(params, "blocks", [])
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


def parse_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    """Query string and body merged; raises ValueError on a malformed JSON body."""
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
