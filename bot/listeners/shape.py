"""A global middleware that turns away signed payloads of the wrong shape before Bolt matches
them to a listener: Bolt's matchers index `actions[0]["action_id"]` and the like directly,
so `"actions": []` was a 500 and a traceback. The acting user must be a Slack user ID too:
a click with no user (or a list for one) used to be audited with an empty or garbage actor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware

from bot.commands import USER_ID

log = logging.getLogger(__name__)


def _user_id(value: Any) -> bool:
    return isinstance(value, str) and bool(USER_ID.fullmatch(value))


def shape_problem(body: dict[str, Any]) -> str | None:
    """Why `body` cannot be a request from Slack, or None when its shape is fine."""
    if not isinstance(body, dict):
        return "the body is not an object"
    if "command" in body:
        return None if _user_id(body.get("user_id")) else "a command without a user ID"
    kind = body.get("type")
    if kind == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            return "block_actions without actions"
        first = actions[0]
        if not isinstance(first, dict) or not isinstance(first.get("action_id"), str):
            return "an action without an action_id"
        user = body.get("user")
        if not isinstance(user, dict) or not _user_id(user.get("id")):
            return "a click without a user ID"
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict):
            return "an event callback without an event"
        if event.get("type") == "app_home_opened" and not _user_id(event.get("user")):
            return "app_home_opened without a user ID"
    return None


class WellFormed(Middleware):
    """Bolt middleware: a 400 and one log line for a payload of the wrong shape.

    A class, not a function: Bolt builds a function middleware's arguments from the body
    (`actions[0]` among them) and fails on exactly the payloads this is meant to turn away.
    """

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        problem = shape_problem(req.body)
        if problem is None:
            return next()
        log.warning("refused a malformed Slack payload: %s", problem)
        return BoltResponse(status=400, body='{"error": "malformed request"}')

    @property
    def name(self) -> str:
        return "WellFormed"
