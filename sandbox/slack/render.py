"""The sandbox's conversations as readable text or a self-contained Slack-like HTML page."""

from __future__ import annotations

import html as html_lib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.slack.conversations import Message
    from sandbox.slack.server import SlackSandbox


def transcript(slack: SlackSandbox) -> str:
    """Every channel and DM, message by message; threads indented, buttons as [Label]."""
    lines: list[str] = []
    for channel, title in _conversations(slack):
        lines.append(f"== {title} ({channel}) ==")
        for msg, replies in _threads(slack, channel):
            lines.extend(_message_lines(slack, msg, "  "))
            for reply in replies:
                lines.extend(_message_lines(slack, reply, "      ↳ "))
        lines.append("")
    for e in slack.ephemerals():
        who, where = _who(slack, e["user"]), slack.channel_name(e["channel"])
        lines.append(f"== ephemeral to {who} in #{where} [{_time(e['message_ts'])}] ==")
        shown = _block_lines(e["blocks"]) if e["blocks"] else [e["text"]]
        lines.extend("  " + t for t in shown if t)
        lines.append("")
    for user_id in sorted(slack.users):
        view = slack.home_view(user_id)
        if view is not None:
            lines.append(f"== App Home of {_who(slack, user_id)} ==")
            lines.extend("  " + t for t in _block_lines(view.get("blocks", [])))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def html(slack: SlackSandbox) -> str:
    """A self-contained HTML page: one panel per channel/DM, Block Kit cards, threads."""
    panels: list[str] = []
    for channel, title in _conversations(slack):
        items = []
        for msg, replies in _threads(slack, channel):
            thread = "".join(_message_html(slack, r) for r in replies)
            thread_html = f'<div class="thread">{thread}</div>' if thread else ""
            items.append(_message_html(slack, msg) + thread_html)
        panels.append(f'<section class="panel"><h2>{_e(title)}</h2>{"".join(items)}</section>')
    ephemerals = [
        f'<div class="msg ephemeral"><div class="meta">Only visible to '
        f"{_e(_who(slack, e['user']))} in #{_e(slack.channel_name(e['channel']))} · "
        f"{_e(_time(e['message_ts']))}</div>{_shown_html(e['text'], e['blocks'])}"
        f"</div>"
        for e in slack.ephemerals()
    ]
    if ephemerals:
        panels.append(f'<section class="panel"><h2>Ephemeral</h2>{"".join(ephemerals)}</section>')
    for user_id in sorted(slack.users):
        view = slack.home_view(user_id)
        if view is not None:
            body = _blocks_html(view.get("blocks", []))
            title = f"App Home of {_who(slack, user_id)}"
            panels.append(f'<section class="panel"><h2>{_e(title)}</h2>{body}</section>')
    return _PAGE.replace("{panels}", "".join(panels))


def _conversations(slack: SlackSandbox) -> Iterator[tuple[str, str]]:
    seen: list[str] = []
    for msg in slack.messages():
        if msg.channel not in seen:
            seen.append(msg.channel)
    for channel in seen:
        if channel.startswith("D"):
            yield channel, f"DM with {_who(slack, 'U' + channel[1:])}"
        else:
            yield channel, f"#{slack.channel_name(channel)}"


def _threads(slack: SlackSandbox, channel: str) -> Iterator[tuple[Message, list[Message]]]:
    messages = slack.messages(channel)
    for msg in messages:
        if msg.thread_ts is None:
            yield msg, [m for m in messages if m.thread_ts == msg.ts]


def _message_lines(slack: SlackSandbox, msg: Message, indent: str) -> list[str]:
    # As Slack shows it: the blocks when there are any (the text is then only the fallback
    # for notifications), else the text.
    shown = "" if msg.blocks else f" {msg.text}"
    head = f"{indent}[{_time(msg.ts)}] {_who(slack, msg.user)}:{shown}"
    if msg.edited:
        head += f" (edited {len(msg.history)}x; first: {msg.history[0]['text']!r})"
    pad = " " * len(indent) + "  "
    return [head, *(pad + t for t in _block_lines(msg.blocks))]


def _block_lines(blocks: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("section", "header"):
            if block.get("text"):
                out.append(_plain(block["text"]))
            out.extend(_plain(f) for f in block.get("fields") or [])
            if isinstance(block.get("accessory"), dict):
                out.append(_element_text(block["accessory"]))
        elif kind == "context":
            out.append(" · ".join(_element_text(e) for e in block.get("elements") or []))
        elif kind == "actions":
            out.append(" ".join(_element_text(e) for e in block.get("elements") or []))
        elif kind == "divider":
            out.append("---")
    return out


def _element_text(element: dict[str, Any]) -> str:
    if element.get("type") == "button":
        return f"[{_plain(element.get('text') or {})}]"
    if element.get("type") == "image":
        return f"(image: {element.get('alt_text', '')})"
    return _plain(element)


def _plain(obj: dict[str, Any]) -> str:
    return str(obj.get("text", ""))


def _message_html(slack: SlackSandbox, msg: Message) -> str:
    edited = ' <span class="edited">(edited)</span>' if msg.edited else ""
    meta = f"{_e(_who(slack, msg.user))} · {_e(_time(msg.ts))}{edited}"
    body = _shown_html(msg.text, msg.blocks)
    return f'<div class="msg"><div class="meta">{meta}</div>{body}</div>'


def _shown_html(text: str, blocks: list[dict[str, Any]]) -> str:
    """As Slack shows a message: its blocks when it has any (the text is then the fallback
    for notifications), else its text."""
    return _blocks_html(blocks) if blocks else _text_html(text)


def _text_html(text: str) -> str:
    return f'<div class="text">{_e(text)}</div>' if text else ""


def _blocks_html(blocks: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            parts.append(f"<h3>{_e(_plain(block.get('text') or {}))}</h3>")
        elif kind == "section":
            text = _text_html(_plain(block["text"])) if block.get("text") else ""
            fields = "".join(f"<div>{_e(_plain(f))}</div>" for f in block.get("fields") or [])
            accessory = block.get("accessory")
            acc = _element_html(accessory) if isinstance(accessory, dict) else ""
            fields_html = f'<div class="fields">{fields}</div>' if fields else ""
            parts.append(f'<div class="section">{text}{fields_html}{acc}</div>')
        elif kind == "context":
            items = " · ".join(_e(_element_text(e)) for e in block.get("elements") or [])
            parts.append(f'<div class="context">{items}</div>')
        elif kind == "actions":
            buttons = "".join(_element_html(e) for e in block.get("elements") or [])
            parts.append(f'<div class="actions">{buttons}</div>')
        elif kind == "divider":
            parts.append("<hr>")
    return f'<div class="card">{"".join(parts)}</div>' if parts else ""


def _element_html(element: dict[str, Any]) -> str:
    if element.get("type") != "button":
        return f"<span>{_e(_element_text(element))}</span>"
    style = element.get("style", "")
    style_class = f" {style}" if style in ("primary", "danger") else ""
    label = _e(_plain(element.get("text") or {}))
    action = _e(str(element.get("action_id", "")))
    return f'<button class="btn{style_class}" title="{action}">{label}</button>'


def _who(slack: SlackSandbox, user_id: str) -> str:
    if user_id == slack.bot_user_id:
        return "@eice"
    user = slack.user(user_id)
    return f"@{user['name']}" if user else user_id


def _time(ts: str | None) -> str:
    if not ts:
        return "?"
    return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%H:%M:%S")


def _e(text: str) -> str:
    return html_lib.escape(text, quote=True)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Slack sandbox</title><style>
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;background:#f8f8f8;margin:0}
.panel{background:#fff;max-width:760px;margin:16px auto;border:1px solid #ddd;border-radius:8px;
padding:8px 16px}
h2{font-size:16px;border-bottom:1px solid #eee;padding-bottom:6px}
.msg{padding:6px 0}.meta{font-weight:bold;font-size:13px;color:#1d1c1d}
.edited,.context{color:#616061;font-size:12px;font-weight:normal}
.text{white-space:pre-wrap;margin:2px 0}
.card{border-left:4px solid #ddd;padding:4px 10px;margin:4px 0}
.fields{display:grid;grid-template-columns:1fr 1fr;gap:4px;white-space:pre-wrap}
.thread{margin-left:28px;border-left:2px solid #e8e8e8;padding-left:10px}
.ephemeral{background:#f4f9ff}
.btn{border:1px solid #bbb;background:#fff;border-radius:4px;padding:4px 10px;margin:4px 6px 4px 0}
.btn.primary{background:#007a5a;color:#fff;border-color:#007a5a}
.btn.danger{background:#e01e5a;color:#fff;border-color:#e01e5a}
</style></head><body>{panels}</body></html>
"""
