"""Block Kit and mrkdwn for a pre-flight report (the dict `PreflightReport.to_dict()` gives).

Pure: the approval card shows `preflight_summary_blocks`, `/eice doctor` replies with
`preflight_text` (or the blocks with `full=True`).
"""

from __future__ import annotations

from typing import Any

ICONS = {"ok": "✅", "warning": "⚠️", "failure": "❌"}
MAX_TEXT = 2900  # Slack allows 3000 characters in a section or context text


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    return list(report.get("checks") or [])


def headline(report: dict[str, Any]) -> str:
    """`✅ reachable`, `⚠️ reachable, 2 warnings: ...` or `❌ will fail: ...`."""
    checks = _checks(report)
    failures = [c for c in checks if c.get("status") == "failure"]
    warnings = [c for c in checks if c.get("status") == "warning"]
    if failures:
        return f"❌ will fail: {escape(str(failures[0].get('evidence', '')))}"
    if warnings:
        count = f"{len(warnings)} warning{'s' if len(warnings) > 1 else ''}"
        return f"⚠️ reachable with {count}: {escape(str(warnings[0].get('evidence', '')))}"
    return "✅ reachable"


def _line(check: dict[str, Any], *, with_fix: bool) -> str:
    icon = ICONS.get(str(check.get("status")), "•")
    text = f"{icon} *{escape(str(check.get('name', '')))}*: {escape(str(check.get('evidence', '')))}"
    fix = check.get("fix")
    if with_fix and fix:
        text += f"\n      fix: `{escape(str(fix))}`"
    return text


def preflight_summary_blocks(report: dict[str, Any], *, full: bool = False) -> list[dict[str, Any]]:
    """A headline section, then one context line per non-ok check (every check when `full`)."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _clip(f"*Pre-flight:* {headline(report)}")},
        }
    ]
    shown = [c for c in _checks(report) if full or c.get("status") != "ok"]
    for check in shown[:45]:  # Slack allows 50 blocks in a message
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": _clip(_line(check, with_fix=full or check.get("status") == "failure")),
                    }
                ],
            }
        )
    return blocks


def preflight_text(report: dict[str, Any]) -> str:
    """The `/eice doctor` reply as mrkdwn: target, headline, every check with its fix."""
    target = report.get("instance_id") or report.get("instance_ref") or "?"
    via = f" via `{report['endpoint_id']}`" if report.get("endpoint_id") else ""
    lines = [
        f"*Pre-flight for `{escape(str(target))}`*{via}, port {report.get('port')}, "
        f"user `{escape(str(report.get('os_user', '')))}`",
        headline(report),
    ]
    lines += [_line(c, with_fix=c.get("status") != "ok") for c in _checks(report)]
    return "\n".join(lines)
