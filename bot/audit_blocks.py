"""`/eice audit` in Slack: reading its arguments and rendering its answer (pure functions)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from access.audit.export import connection_line
from access.audit.queries import Connection, GrantAudit
from access.aws.ec2 import INSTANCE_ID
from access.durations import format_duration, parse_duration
from access.errors import InvalidInput
from access.ids import GRANT_REF
from bot.actions import AuditAction
from bot.blocks import escape

USAGE = "usage: `/eice audit [i-... | @user | g-...] [--since 7d]`"
PAGE_SIZE = 5  # grants per Slack page: each takes three blocks and up to 8 connection lines
MAX_PAGE = 1000
MAX_QUERY_TEXT = 1500
DEFAULT_SINCE = timedelta(days=7)
MAX_SINCE = timedelta(days=90)  # CloudTrail's own horizon
MAX_LINES_PER_GRANT = 8
_INSTANCE = INSTANCE_ID
_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,})(?:\|[^>]*)?>$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GRANT = GRANT_REF


@dataclass(frozen=True)
class AuditQuery:
    """What `/eice audit ...` asked for."""

    instance_id: str | None = None
    user_id: str | None = None
    grant_id: str | None = None
    since: timedelta = DEFAULT_SINCE

    def as_text(self) -> str:
        """The canonical `/eice audit` arguments for this query (`parse_audit_args` reads them back)."""
        subject = self.instance_id or (f"<@{self.user_id}>" if self.user_id else self.grant_id)
        return " ".join(filter(None, [subject, f"--since {format_duration(self.since)}"]))

    def describe(self) -> str:
        subject = self.instance_id or (f"<@{self.user_id}>" if self.user_id else self.grant_id)
        return f"{subject or 'all grants'}, last {format_duration(self.since)}"


def _grants(n: int) -> str:
    return f"{n} grant" if n == 1 else f"{n} grants"


def parse_audit_args(text: str) -> AuditQuery:
    """Parse `[i-... | <@U..> | g-...] [--since 7d]`.

    Raises:
        InvalidInput: an unknown word, two subjects, or a bad `--since`.
    """
    words = text.split()
    subject: dict[str, str] = {}
    since, since_given = DEFAULT_SINCE, False
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--since" or word.startswith("--since="):
            if since_given:
                raise InvalidInput(f"--since is given twice. {USAGE}")
            since_given = True
            value = word.partition("=")[2] if "=" in word else None
            if value is None:
                if i + 1 >= len(words):
                    raise InvalidInput(f"--since needs a duration such as 7d. {USAGE}")
                i += 1
                value = words[i]
            since = parse_duration(value)
            if since > MAX_SINCE:
                raise InvalidInput("--since can go back at most 90d (CloudTrail keeps 90 days)")
        elif word.startswith("--"):
            raise InvalidInput(f"unknown option {word[:30]!r}. {USAGE}")
        else:
            kind, value = _subject(word)
            if subject:
                raise InvalidInput(f"give one instance, user or grant, not several. {USAGE}")
            subject[kind] = value
        i += 1
    return AuditQuery(
        instance_id=subject.get("instance_id"),
        user_id=subject.get("user_id"),
        grant_id=subject.get("grant_id"),
        since=since,
    )


def _subject(word: str) -> tuple[str, str]:
    if _INSTANCE.match(word):
        return "instance_id", word
    mention = _MENTION.match(word)
    if mention:
        return "user_id", mention.group(1)
    if _USER_ID.match(word):
        return "user_id", word
    if _GRANT.match(word):
        return "grant_id", word
    if word.startswith("@"):
        raise InvalidInput(f"{word[:40]!r}: pick the person from Slack's @-menu. {USAGE}")
    raise InvalidInput(f"{word[:40]!r} is not an instance ID, a @user or a grant ID. {USAGE}")


def _ts(value: Any) -> str:
    epoch = int(value.timestamp())
    return f"<!date^{epoch}^{{date_short}} {{time_secs}}|{value.strftime('%Y-%m-%d %H:%M:%SZ')}>"


def _grant_text(r: GrantAudit) -> str:
    approved = ", ".join(f"<@{a}>" for a in r.approvers) or ("auto-approved" if r.auto_approved else "nobody")
    flags = "  :rotating_light: *break-glass*" if r.break_glass else ""
    end = f", revoked {_ts(r.revoked_at)}" if r.revoked_at else ""
    lines = [
        f"*{r.grant_id}* `{r.instance_id}` {escape(r.instance_name or '')} ({r.region}), {r.status}{flags}",
        f"<@{r.requester_id}> as `{r.os_user}`:{r.port}, approved by {approved}",
        f"{_ts(r.starts_at)} to {_ts(r.expires_at)}{end}",
    ]
    if r.reason:
        lines.append(f"_{escape(r.reason[:200])}_")
    return "\n".join(lines)


def _connections_text(connections: Sequence[Connection]) -> str:
    if not connections:
        return "no connections seen"
    shown = [
        ("" if c.allowed else ":no_entry: ") + connection_line(c) for c in connections[:MAX_LINES_PER_GRANT]
    ]
    more = len(connections) - len(shown)
    if more > 0:
        shown.append(f"... and {more} more (`eice audit --grant` shows all)")
    return "\n".join(shown)[:2900]


def _page_button(action: AuditAction, label: str, query_text: str, page: int) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action.value,
        "text": {"type": "plain_text", "text": label},
        "value": json.dumps({"q": query_text[:1500], "page": page}),
    }


def audit_blocks(
    results: Sequence[GrantAudit],
    page: int,
    page_size: int,
    *,
    query: AuditQuery | None = None,
    query_text: str = "",
    out_of_band: Sequence[Connection] = (),
) -> list[dict[str, Any]]:
    """Block Kit for one page of `results` (all results of the query, newest first).

    Args:
        results: every grant the query found; this page shows [page*size, (page+1)*size).
        page: zero-based page number.
        page_size: grants per page (at most 10, to stay under Slack's 50 blocks).
        query: what was asked, for the heading.
        query_text: the original command text, carried in the page buttons' value.
        out_of_band: EICE use no grant explains (shown on the first page).
    """
    page_size = max(1, min(page_size, 10))
    pages = max(1, -(-len(results) // page_size))
    page = max(0, min(page, pages - 1))
    return _render(
        results[page * page_size : (page + 1) * page_size],
        page=page,
        summary=f"{_grants(len(results))}, page {page + 1} of {pages}",
        has_next=page + 1 < pages,
        query=query,
        query_text=query_text,
        out_of_band=out_of_band,
    )


def audit_page_blocks(
    rows: Sequence[GrantAudit],
    page: int,
    page_size: int,
    *,
    has_more: bool,
    query: AuditQuery | None = None,
    query_text: str = "",
    out_of_band: Sequence[Connection] = (),
) -> list[dict[str, Any]]:
    """Block Kit for one page fetched on its own (`limit`/`offset`), so no total is known.

    Args:
        rows: the grants of this page only, newest first.
        page: zero-based page number the rows were fetched for.
        page_size: grants per page (the offset was `page * page_size`).
        has_more: whether a further page exists (fetch `page_size + 1` rows to know).
        query, query_text, out_of_band: as for `audit_blocks`.
    """
    first = page * page_size + 1
    if rows:
        summary = f"grants {first}-{first + len(rows) - 1}, page {page + 1}"
        summary += ", more on the next page" if has_more else ", the last page"
    else:
        summary = f"page {page + 1}: no grants this far back" if page else "no grants"
    return _render(
        rows,
        page=page,
        summary=summary,
        has_next=has_more,
        query=query,
        query_text=query_text,
        out_of_band=out_of_band,
    )


def _render(
    shown: Sequence[GrantAudit],
    *,
    page: int,
    summary: str,
    has_next: bool,
    query: AuditQuery | None,
    query_text: str,
    out_of_band: Sequence[Connection],
) -> list[dict[str, Any]]:
    heading = f"Audit: {query.describe()}" if query else "Audit"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": heading[:150]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": summary}]},
    ]
    if not shown:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "No matching grants."}})
    for r in shown:
        blocks.append({"type": "divider"})
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _grant_text(r)}})
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _connections_text(r.connections)}],
            }
        )
    if out_of_band and page == 0:
        lines = [f"{connection_line(c)} by `{c.principal_arn}`" for c in out_of_band[:10]]
        blocks.append({"type": "divider"})
        text = ":warning: *EICE use without a grant from this bot*\n" + "\n".join(lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}})
    buttons = []
    if page > 0:
        buttons.append(_page_button(AuditAction.PREVIOUS, "Previous", query_text, page - 1))
    if has_next:
        buttons.append(_page_button(AuditAction.NEXT, "Next", query_text, page + 1))
    if buttons:
        blocks.append({"type": "actions", "block_id": "audit-pages", "elements": buttons})
    return blocks


def parse_page_value(value: str) -> tuple[str, AuditQuery, int]:
    """A page button's value back into (command text, query, page), refusing anything else.

    Raises:
        InvalidInput: not the JSON this module writes, a page out of range, or a query
            that `/eice audit` itself would refuse.
    """
    bad = "that page button is not one this bot made; run `/eice audit` again"
    if not isinstance(value, str) or len(value) > MAX_QUERY_TEXT + 100:
        raise InvalidInput(bad)
    try:
        data = json.loads(value)
    except ValueError:
        raise InvalidInput(bad) from None
    if not isinstance(data, dict) or set(data) != {"q", "page"}:
        raise InvalidInput(bad)
    text, page = data["q"], data["page"]
    if not isinstance(text, str) or len(text) > MAX_QUERY_TEXT:
        raise InvalidInput(bad)
    if isinstance(page, bool) or not isinstance(page, int) or not 0 <= page <= MAX_PAGE:
        raise InvalidInput(f"page {str(page)[:20]!r} is out of range (0 to {MAX_PAGE}); {bad}")
    return text, parse_audit_args(text), page


def audit_text(
    results: Sequence[GrantAudit],
    page: int,
    page_size: int,
    *,
    query: AuditQuery | None = None,
    out_of_band: Sequence[Connection] = (),
) -> str:
    """The notification/fallback text of the same page (no Block Kit)."""
    page_size = max(1, min(page_size, 10))
    pages = max(1, -(-len(results) // page_size))
    page = max(0, min(page, pages - 1))
    heading = f"Audit: {query.describe()}" if query else "Audit"
    lines = [f"{heading} ({_grants(len(results))}, page {page + 1} of {pages})"]
    for r in results[page * page_size : (page + 1) * page_size]:
        lines.append(
            f"{r.grant_id} {r.instance_id} <@{r.requester_id}> {r.status}, "
            f"{len(r.connections)} connections" + (" (break-glass)" if r.break_glass else "")
        )
    if out_of_band and page == 0:
        lines.append(f"{len(out_of_band)} EICE events without a grant from this bot")
    return "\n".join(lines)
