"""The Web API methods the bot calls: each takes the sandbox and the merged params, returns the body.

A method raises ``SlackApiError`` for Slack's ``{"ok": false}`` answers; ``run_method`` shapes both.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sandbox.slack.params import SlackApiError, content, error_body, json_field

if TYPE_CHECKING:
    from sandbox.slack.server import SlackSandbox


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
    text, blocks = content(p)
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
    view = json_field(p, "view", None)
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


METHODS: dict[str, Callable[[SlackSandbox, dict[str, Any]], dict[str, Any]]] = {
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


def run_method(impl: Callable, sb: SlackSandbox, params: dict[str, Any]) -> tuple[int, Any, dict]:
    """Call one method: HTTP 200 with ``ok`` true and its body, or ``ok`` false and its error."""
    try:
        return 200, {"ok": True, **impl(sb, params)}, {}
    except SlackApiError as e:
        return 200, error_body(e.error), {}
