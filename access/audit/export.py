"""Audit query results as text: a table for people, JSON and CSV for tools."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime

from access.audit.queries import Connection, GrantAudit, jsonable

CSV_FIELDS = (
    "grant_id",
    "requester_id",
    "principal_arn",
    "instance_id",
    "status",
    "starts_at",
    "expires_at",
    "revoked_at",
    "break_glass",
    "approvers",
    "event_time",
    "event_name",
    "source_ip",
    "user_agent",
    "allowed",
    "error_code",
    "flag",
)


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else ""


def to_json(results: Sequence[GrantAudit], out_of_band: Sequence[Connection] = ()) -> str:
    """One JSON document: {"grants": [...], "out_of_band": [...]}."""
    document = {
        "grants": [r.to_dict() for r in results],
        "out_of_band": [jsonable(c.__dict__) for c in out_of_band],
    }
    return json.dumps(document, indent=2, sort_keys=True)


def _event_fields(c: Connection) -> dict[str, object]:
    return {
        "event_time": c.at.isoformat(),
        "event_name": c.event_name,
        "source_ip": c.source_ip or "",
        "user_agent": c.user_agent or "",
        "allowed": c.allowed,
        "error_code": c.error_code or "",
        "flag": c.flag or "",
    }


def to_csv(results: Sequence[GrantAudit], out_of_band: Sequence[Connection] = ()) -> str:
    """One line per connection (a grant without any gets one line with empty event fields);
    then EICE use no grant explains, with empty grant fields and the flag `out_of_band`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        base = {
            "grant_id": r.grant_id,
            "requester_id": r.requester_id,
            "principal_arn": r.principal_arn,
            "instance_id": r.instance_id,
            "status": r.status,
            "starts_at": r.starts_at.isoformat(),
            "expires_at": r.expires_at.isoformat(),
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else "",
            "break_glass": r.break_glass,
            "approvers": " ".join(r.approvers),
        }
        if not r.connections:
            writer.writerow(base)
        for c in r.connections:
            writer.writerow({**base, **_event_fields(c)})
    for c in out_of_band:
        row = {"principal_arn": c.principal_arn or "", "instance_id": c.instance_id or ""}
        writer.writerow({**row, **_event_fields(c), "flag": "out_of_band"})
    return buffer.getvalue()


def to_table(results: Sequence[GrantAudit], out_of_band: Sequence[Connection] = ()) -> str:
    """A plain-text report, one block per grant, connections indented under it."""
    lines: list[str] = []
    for r in results:
        approved = ", ".join(r.approvers) or ("auto-approved" if r.auto_approved else "-")
        flags = " BREAK-GLASS" if r.break_glass else ""
        lines.append(
            f"{r.grant_id}  {r.instance_id} {r.instance_name}  {r.requester_id} "
            f"({r.principal_arn})  {r.status}{flags}"
        )
        end = f"  revoked {_t(r.revoked_at)}" if r.revoked_at else ""
        lines.append(f"    window {_t(r.starts_at)} .. {_t(r.expires_at)}{end}  approved by {approved}")
        if not r.connections:
            lines.append("    no connections seen")
        for c in r.connections:
            lines.append("    " + connection_line(c))
    if out_of_band:
        lines.append("Out-of-band EICE use (no grant of this bot explains it):")
        for c in out_of_band:
            lines.append(f"    {connection_line(c)}  by {c.principal_arn}  on {c.instance_id}")
    if not lines:
        return "no matching grants"
    return "\n".join(lines)


def connection_line(c: Connection) -> str:
    """`2025-03-01 12:00:00Z OpenTunnel from 10.0.0.1 (aws-cli/2) allowed`."""
    outcome = "allowed" if c.allowed else f"DENIED {c.error_code}"
    flag = f" [{c.flag}]" if c.flag else ""
    agent = f" ({c.user_agent[:60]})" if c.user_agent else ""
    return f"{_t(c.at)} {c.event_name} from {c.source_ip or '?'}{agent} {outcome}{flag}"
