"""CloudTrail activity and the audit chain's head, as the lines the bot posts.

Per page of CloudTrail events, the collector queues one note per grant for the events that
grant explains (`audit.connection`) and one for those no grant explains
(`audit.out_of_band`); the chain witness queues the head; these
turn their payloads (`access.audit.store`, `access.audit.collector`) into Slack text.
Everything in a payload came from CloudTrail, so it is escaped before it is shown.
"""

from __future__ import annotations

import contextlib
from typing import Any

from access.clock import parse_iso
from bot.blocks import escape, slack_date

# Why a refused attempt tied to a grant deserves a second look (`access.audit.matching`).
FLAGS = {
    "outside_grant": "outside what the grant allows",
    "after_expiry": "after the grant expired",
    "after_revoke": "after the grant was revoked",
}


def _code(value: Any) -> str:
    """`value` as inline code (escaped; a backtick in it cannot end the code span)."""
    text = escape(str(value)).replace("`", "'")
    return f"`{text}`"


def _action(payload: dict[str, Any]) -> tuple[str, str, str]:
    """(verb, its past tense, object) of the call, e.g. ("open", "opened", "a tunnel to ...")."""
    name = str(payload.get("event_name") or "?")
    if name == "OpenTunnel":
        where = _code(f"{payload.get('private_ip') or '?'}:{payload.get('port') or '?'}")
        return "open", "opened", f"a tunnel to {where} through {_code(payload.get('endpoint_id') or '?')}"
    if name == "SendSSHPublicKey":
        user, instance = _code(payload.get("os_user") or "?"), _code(payload.get("instance_id") or "?")
        return "push", "pushed", f"an SSH key for {user} on {instance}"
    return "call", "called", _code(name)


def _when_and_where(payload: dict[str, Any]) -> str:
    text = ""
    with contextlib.suppress(ValueError):
        text = f" at {slack_date(parse_iso(str(payload.get('event_time'))))}"
    if payload.get("source_ip"):
        text += f" from {_code(payload['source_ip'])}"
    return text


def _outcome(payload: dict[str, Any], who: str) -> tuple[str, str]:
    """(emoji, sentence): what happened, and to whom."""
    verb, done, target = _action(payload)
    if payload.get("error_code"):
        return ":no_entry:", f"{who} tried to {verb} {target}: refused ({_code(payload['error_code'])})"
    return (":key:" if verb == "push" else ":electric_plug:"), f"{who} {done} {target}"


SHOWN = 10  # lines of one note or alert; the rest are counted


def events_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a note: a page's worth under "events" (a note of one event queued by an
    earlier version is the event itself)."""
    events = payload.get("events")
    return events if isinstance(events, list) else [payload]


def _listed(header: str, lines: list[str], rest: str) -> str:
    """`header`, then the first `SHOWN` lines as bullets and how many more `rest` lists."""
    shown = [f"• {line}" for line in lines[:SHOWN]]
    if len(lines) > SHOWN:
        shown.append(f"… and {len(lines) - SHOWN} more: {rest}")
    return header + "\n" + "\n".join(shown)


def _calls(count: int) -> str:
    return "1 call" if count == 1 else f"{count} calls"


def _connection_line(event: dict[str, Any]) -> str:
    requester = event.get("requester_id")
    who = f"<@{escape(str(requester))}>" if requester else _code(event.get("principal_arn") or "?")
    emoji, sentence = _outcome(event, who)
    text = f"{emoji} {sentence}{_when_and_where(event)}"
    flag = event.get("flag")
    if flag:
        text += f": *{FLAGS.get(str(flag), escape(str(flag)))}*"
    return text


def connection_notice(payload: dict[str, Any], grant_id: str | None) -> str:
    """CloudTrail events a grant explains (one collector page of them), for the grant's
    thread (and, the flagged ones, the audit channel): who, what, when, from where, and why
    one deserves a look. One event is one line; more are listed under one header, the
    first `SHOWN` of them."""
    events = events_of(payload)
    source = f"grant `{grant_id}`, CloudTrail" if grant_id else "CloudTrail"
    if len(events) == 1:
        return f"{_connection_line(events[0])} ({source})"
    command = f"/eice audit {grant_id}" if grant_id else "eice audit --since 1d"
    rest = f"`{command}` lists them all"
    header = f":electric_plug: {_calls(len(events))} through EICE ({source}):"
    return _listed(header, [_connection_line(event) for event in events], rest)


def out_of_band_notice(payload: dict[str, Any]) -> str:
    """EICE use that no grant of this bot explains (one collector page of it), for the audit
    channel: a line per event, the first `SHOWN` of them."""
    events = events_of(payload)
    lines = []
    for event in events:
        _emoji, sentence = _outcome(event, _code(event.get("principal_arn") or "unknown principal"))
        instance = f" (instance {_code(event['instance_id'])})" if event.get("instance_id") else ""
        lines.append(f"{sentence}{instance}{_when_and_where(event)}")
    header = f":mag: EICE use no grant explains ({_calls(len(events))}):"
    return _listed(header, lines, "`eice audit --since 1d` lists them all")


def chain_head_notice(payload: dict[str, Any]) -> str:
    """The audit chain's head, posted as an outside witness."""
    seq, head = int(payload.get("seq") or 0), escape(str(payload.get("hash")))
    return (
        f":link: Audit chain head: row {seq:,}, hash `{head}`. To check that the log still holds "
        f"it, run `eice audit verify --at-row {seq} --head {head}`."
    )
